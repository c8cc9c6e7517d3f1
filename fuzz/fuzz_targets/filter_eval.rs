#![no_main]
//! The filter evaluator against a resource (not only the parser), for Users and Groups.
//! Input: a kind byte, then the filter text, a newline, and a JSON resource (a fixed rich
//! one when the rest is not a JSON object).
//!
//! Oracles:
//! - a filter resolved for the kind prints back to text that resolves to the same tree;
//! - `not f` evaluates to the opposite of `f`; `matches_deciding` with nothing decided
//!   agrees with `matches`;
//! - a root search's `resolve_for_type` agrees with `parse_for` + `matches` whenever the
//!   filter resolves for the kind;
//! - for Groups, conditions on `members` decided a part of the members at a time (as the
//!   store does for large groups, `conditions_on` + `every_part`) agree with evaluating the
//!   whole member list.

use libfuzzer_sys::fuzz_target;
use scimd::scim::filter::{self, Filter, ForType};
use scimd::scim::schema::Kind;
use serde_json::{Value, json};

fn default_resource(kind: Kind) -> Value {
    match kind {
        Kind::User => json!({"id": "2819c223", "userName": "Bjensen@Example.com", "externalId": "Ext-1",
            "active": true, "title": "Tour Guide", "nickName": "",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "x509Certificates": [{"value": "QUJD"}],
            "meta": {"resourceType": "User", "created": "2011-08-01T18:29:49.793Z",
                     "lastModified": "2011-08-01T18:29:49.793-07:00"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": "701984", "manager": {"value": "26118915"}}}),
        Kind::Group => json!({"id": "g1", "displayName": "Staff",
            "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"},
                        {"value": "g1", "type": "Group"}, {"value": "u3"}, {"value": "g2", "type": "Group"}],
            "meta": {"resourceType": "Group", "created": "2011-08-01T18:29:49Z", "lastModified": "2011-08-01T18:29:49Z"}}),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    if rest.len() > 16 * 1024 {
        return;
    }
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let kind = if first & 1 == 0 { Kind::User } else { Kind::Group };
    let (text, json_text) = s.split_once('\n').unwrap_or((s, ""));
    let resource = match serde_json::from_str::<Value>(json_text) {
        Ok(v @ Value::Object(_)) => v,
        _ => default_resource(kind),
    };

    // Root search: resolution per type must not panic, and must agree with the type's own.
    let parsed = filter::parse(text);
    let for_type = parsed.as_ref().ok().map(|p| {
        filter::resolve_for_type(kind.into(), &[Kind::User.into(), Kind::Group.into()], p)
    });
    if let Some(p) = parsed.as_ref().ok() {
        let _ = filter::check_known_somewhere(&[Kind::User.into(), Kind::Group.into()], p);
    }

    let Ok(f) = filter::parse_for(kind, text) else { return };
    let printed = f.to_string();
    let unlimited = filter::Limits { max_len: usize::MAX, max_depth: usize::MAX };
    match filter::parse_for_with(kind, &printed, unlimited) {
        Ok(again) => assert_eq!(again, f, "{text:?} printed as {printed:?} resolves differently"),
        Err(e) => panic!("{text:?} printed as {printed:?} does not resolve: {e:?}"),
    }

    let m = filter::matches(&f, kind, &resource);
    let not = Filter::Not(Box::new(f.clone()));
    assert_eq!(filter::matches(&not, kind, &resource), !m, "not {text:?}");
    assert_eq!(filter::matches_deciding(&f, kind, &resource, &[]), m, "deciding nothing: {text:?}");

    match for_type {
        Some(Ok(ForType::Some(g))) => {
            assert_eq!(filter::matches(&g, kind, &resource), m, "resolve_for_type {text:?}: {g}")
        }
        Some(Ok(ForType::All)) => assert!(m, "resolve_for_type said All: {text:?}"),
        Some(Ok(ForType::Nothing)) => assert!(!m, "resolve_for_type said Nothing: {text:?}"),
        Some(Err(e)) => panic!("{text:?} resolves for {kind:?} but not in a root search: {e:?}"),
        None => {}
    }

    if kind == Kind::Group {
        // The store keeps members apart and decides member conditions part by part.
        let members: Vec<Value> = resource
            .get("members")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut body = resource.clone();
        if let Value::Object(o) = &mut body {
            o.remove("members");
        }
        let mut whole = body.clone();
        if !members.is_empty() {
            whole["members"] = Value::Array(members.clone());
        }
        let expected = filter::matches(&f, kind, &whole);
        let conditions = filter::conditions_on(&f, "members");
        for part in [1usize, 2, 3] {
            let mut decided: Vec<(&Filter, bool)> = conditions
                .iter()
                .map(|c| (*c, filter::every_part(c)))
                .collect();
            let chunks: Vec<&[Value]> = if members.is_empty() {
                vec![&members[..]]
            } else {
                members.chunks(part).collect()
            };
            for chunk in chunks {
                for (c, answer) in decided.iter_mut() {
                    let here = filter::matches(c, kind, &json!({ "members": chunk }));
                    if filter::every_part(c) {
                        *answer &= here;
                    } else {
                        *answer |= here;
                    }
                }
            }
            assert_eq!(
                filter::matches_deciding(&f, kind, &body, &decided),
                expected,
                "{text:?} on {} members decided in parts of {part}",
                members.len()
            );
        }
    }
});
