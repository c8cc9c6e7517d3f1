#![no_main]
//! `attributes` / `excludedAttributes` against an extension whose complex attributes have
//! `always`, `request` and `never` *sub-attributes* (the shared fuzz tenant has none).
//! Input: `attributes` line, `excludedAttributes` line ("-" or missing = absent), then an
//! optional JSON object used as the extension's stored value (normalized; the fixed one
//! when it does not normalize).
//!
//! Oracles: nothing added (output is a sub-tree of input, list values a subsequence); never
//! sub-attributes never shown; a request sub-attribute only when attributes names its
//! parent or the URN; each kept value keeps its own `always` sub-attribute (no value
//! labelled with another's); with no value filter anywhere every stored `always`
//! sub-attribute comes back, in order; the `always` attribute `audit` always comes back;
//! idempotence (without value filters: a filter on a sub-attribute also excluded matches
//! nothing the second time); `schemas` lists exactly the extensions held.

use libfuzzer_sys::fuzz_target;
use scimd::config::ExtensionConfig;
use scimd::scim::projection::Projection;
use scimd::scim::render::Resource;
use scimd::scim::resource;
use scimd::scim::schema::{Kind, Rt, SchemaDef};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

const EXT: &str = "urn:example:subs:2.0:User";

fn rt() -> Rt {
    static R: OnceLock<Rt> = OnceLock::new();
    *R.get_or_init(|| {
        let e: ExtensionConfig = serde_json::from_value(json!({
            "urn": EXT, "name": "Subs", "resource": "User",
            "attributes": [
                {"name": "note", "returned": "request"},
                {"name": "tag", "returned": "always"},
                {"name": "plain"},
                {"name": "keys", "type": "complex", "multi_valued": true, "sub_attributes": [
                    {"name": "kid", "returned": "always"}, {"name": "label"},
                    {"name": "secret", "returned": "never"}, {"name": "memo", "returned": "request"},
                    {"name": "primary", "type": "boolean"}]},
                {"name": "profile", "type": "complex", "sub_attributes": [
                    {"name": "id", "returned": "always"}, {"name": "bio"},
                    {"name": "pin", "returned": "never"}, {"name": "memo", "returned": "request"}]},
                {"name": "vault", "type": "complex", "returned": "request", "sub_attributes": [
                    {"name": "id", "returned": "always"}, {"name": "data"}]},
                {"name": "audit", "type": "complex", "multi_valued": true, "returned": "always",
                 "sub_attributes": [{"name": "who"}, {"name": "why", "returned": "request"},
                    {"name": "hush", "returned": "never"}]},
                {"name": "tips", "type": "complex", "multi_valued": true, "sub_attributes": [
                    {"name": "value"}, {"name": "extra", "returned": "request"}]}
            ]})).expect("extension config");
        let def: &'static SchemaDef = scimd::extensions::schema(&e);
        let mut all: Vec<&'static SchemaDef> = Kind::User.extensions().to_vec();
        all.push(def);
        Rt { kind: Kind::User, ext: Box::leak(all.into_boxed_slice()) }
    })
}

fn default_ext() -> Value {
    json!({"note": "n", "tag": "t", "plain": "p",
        "keys": [{"kid": "k1", "label": "L1", "secret": "s1", "memo": "m1"},
                 {"kid": "k2", "label": "L2", "secret": "s2"},
                 {"label": "L3", "memo": "m3"},
                 {"kid": "k4", "label": "L1", "primary": true},
                 {"secret": "only"}],
        "profile": {"id": "p1", "bio": "hello", "pin": "9", "memo": "pm"},
        "vault": {"id": "v1", "data": "d"},
        "audit": [{"who": "w1", "why": "y1", "hush": "h1"}, {"who": "w2"}, {"why": "only-why"}],
        "tips": [{"value": "a", "extra": "x"}, {"extra": "only-extra"}]})
}

fn rendered(ext: Value) -> Option<Map<String, Value>> {
    let raw = json!({"userName": "a@b.c", "emails": [{"value": "a@b.c", "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"},
        (EXT): ext});
    let body = resource::normalize(rt(), &raw).ok()?.body;
    let r = Resource {
        kind: Kind::User,
        id: "2f1e0c9a".into(),
        body,
        created: "2024-01-01T00:00:00Z".into(),
        modified: "2024-01-02T00:00:00Z".into(),
        version: 3,
        refs: Some(vec![json!({"value": "g1", "display": "G"})]),
    }
    .into_json("https://h/scim/v2");
    Some(r)
}

/// `out` is `inp` with parts taken away (objects: sub-maps; lists: a subsequence of parts).
fn part_of(out: &Value, inp: &Value) -> bool {
    match (out, inp) {
        (Value::Object(o), Value::Object(i)) => o.iter().all(|(k, v)| i.get(k).is_some_and(|iv| part_of(v, iv))),
        (Value::Array(o), Value::Array(i)) => {
            let mut it = i.iter();
            o.iter().all(|ov| it.any(|iv| part_of(ov, iv)))
        }
        _ => out == inp,
    }
}

fn subs_named(list: &[Value], sub: &str) -> Vec<Value> {
    list.iter().filter_map(|e| e.get(sub).cloned()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if s.len() > 16 * 1024 {
        return;
    }
    let rt = rt();
    let mut lines = s.splitn(3, '\n');
    let attrs = lines.next().filter(|a| *a != "-");
    let excl = lines.next().filter(|a| *a != "-");
    let ext_value = lines
        .next()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
        .filter(Value::is_object);
    let input = match ext_value.and_then(rendered) {
        Some(r) => r,
        None => rendered(default_ext()).expect("default resource"),
    };
    let p = Projection::parse(rt, attrs, excl);
    let mut out = input.clone();
    p.apply(rt, &mut out);
    let ctx = || format!("attributes={attrs:?} excludedAttributes={excl:?}\n in: {}\nout: {}",
        Value::Object(input.clone()), Value::Object(out.clone()));

    assert_eq!(out.get("id"), input.get("id"), "id lost: {}", ctx());
    // Nothing added.
    let mut inp_schemas = input.clone();
    inp_schemas.remove("schemas");
    let mut out_schemas = out.clone();
    out_schemas.remove("schemas");
    assert!(part_of(&Value::Object(out_schemas), &Value::Object(inp_schemas)), "projection added something: {}", ctx());

    // schemas lists exactly the extensions held.
    let listed: Vec<&str> = out["schemas"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for k in out.keys().filter(|k| k.starts_with("urn:")) {
        assert!(listed.iter().any(|l| l.eq_ignore_ascii_case(k)), "{k} held but not in schemas: {}", ctx());
    }
    for l in listed.iter().filter(|l| !l.eq_ignore_ascii_case(rt.schema().id)) {
        assert!(out.contains_key(*l), "schemas lists {l}, not held: {}", ctx());
    }

    let lc = |x: Option<&str>| x.unwrap_or("").to_ascii_lowercase();
    let (a_lc, e_lc) = (lc(attrs), lc(excl));
    let named = |name: &str| a_lc.contains(&name.to_ascii_lowercase()) || a_lc.contains(&EXT.to_ascii_lowercase());
    let had = input.get(EXT).and_then(Value::as_object).cloned().unwrap_or_default();
    let got = out.get(EXT).and_then(Value::as_object).cloned().unwrap_or_default();

    // never sub-attributes; request sub-attributes only when the parent is named.
    for (parent, never, request) in [("keys", "secret", "memo"), ("profile", "pin", "memo"),
        ("audit", "hush", "why"), ("tips", "", "extra")] {
        let vals: Vec<&Map<String, Value>> = match got.get(parent) {
            Some(Value::Object(m)) => vec![m],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).collect(),
            _ => vec![],
        };
        for v in &vals {
            assert!(never.is_empty() || !v.contains_key(never), "never {parent}.{never} shown: {}", ctx());
            assert!(!v.contains_key(request) || named(parent), "request {parent}.{request} shown unasked: {}", ctx());
            assert!(!v.is_empty(), "empty value of {parent} shown: {}", ctx());
        }
        if let Some(Value::Array(a)) = got.get(parent) {
            assert!(!a.is_empty(), "empty list {parent} shown: {}", ctx());
        }
    }
    assert!(!got.contains_key("note") || named("note"), "request note shown unasked: {}", ctx());
    assert_eq!(got.get("tag"), had.get("tag"), "always tag: {}", ctx());

    // Each kept key value keeps its own kid: match output values to input values in order.
    let empty = Vec::new();
    let in_keys = had.get("keys").and_then(Value::as_array).unwrap_or(&empty);
    let out_keys = got.get("keys").and_then(Value::as_array).unwrap_or(&empty);
    {
        let mut it = in_keys.iter();
        for ok in out_keys {
            let found = it.any(|ik| part_of(ok, ik) && ik.get("kid") == ok.get("kid"));
            assert!(found, "key value {ok} lost or mislabelled its kid: {}", ctx());
        }
    }
    let filtered = a_lc.contains('[') || e_lc.contains('[');
    if !filtered {
        assert_eq!(subs_named(out_keys, "kid"), subs_named(in_keys, "kid"), "always keys.kid not all returned: {}", ctx());
        let pid = had.get("profile").and_then(|p| p.get("id"));
        assert_eq!(got.get("profile").and_then(|p| p.get("id")), pid, "always profile.id: {}", ctx());
        // audit is returned always; its `who` values all come back.
        let in_a = had.get("audit").and_then(Value::as_array).unwrap_or(&empty);
        let out_a = got.get("audit").and_then(Value::as_array).unwrap_or(&empty);
        assert_eq!(subs_named(out_a, "who"), subs_named(in_a, "who"), "always audit: {}", ctx());
    }

    if !filtered {
        let mut twice = out.clone();
        p.apply(rt, &mut twice);
        assert_eq!(twice, out, "projection is not idempotent: {}", ctx());
    }
});
