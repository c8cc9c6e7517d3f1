//! Turning what a client sends into the canonical stored form, and checking it against the
//! schema. IdPs are sloppy in known ways (idp-notes §8): attribute names in any case, `null`
//! for absent, booleans as strings, a single object where an array belongs, the manager as a
//! bare string, unknown attributes and schema URNs. Those are normalised here, once, for POST,
//! PUT and PATCH alike. What would lose data (a wrong type, a missing required attribute) is a
//! 400 `invalidValue`.

mod checks;
mod compare;
mod input;
mod members;
mod multi_valued;
mod values;

use serde_json::{Map, Value};

use super::schema::AttrRef;

pub use checks::{
    check_immutable, check_required, check_required_extensions, drop_dangling_references, holds,
    is_reference,
};
pub use compare::{keep_from_old, reads_the_same};
pub use input::{Ignored, Input, SetMode, apply_key, normalize, note_unknown_subs};
pub use members::normalize_members;
pub use multi_valued::{
    MAX_VALUES, check_count, demote_primary, give_back_primary, holds_hollow_primary,
};
pub use values::{
    EXACT_IN_A_DOUBLE, normalize_attr, normalize_attr_keeping_hollow, normalize_simple,
    normalize_single, refuses_controls, type_name,
};

/// Canonical resource body: core attributes at the top level, extension attributes in an
/// object under their URN. Never holds `id`, `meta`, `schemas`, `groups`, `password`, or
/// (for groups) `members`: those are kept apart by the store.
pub type Body = Map<String, Value>;

/// The object an attribute lives in: the body itself, or its extension object.
pub fn container_mut(body: &mut Body, attr: AttrRef) -> &mut Body {
    match attr.ext {
        None => body,
        Some(urn) => {
            let e = body
                .entry(urn.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            match e {
                Value::Object(m) => m,
                _ => unreachable!("set to an object above"),
            }
        }
    }
}

pub fn container(body: &Body, attr: AttrRef) -> Option<&Body> {
    match attr.ext {
        None => Some(body),
        Some(urn) => body.get(urn).and_then(Value::as_object),
    }
}

pub fn drop_empty_extension(body: &mut Body, attr: AttrRef) {
    if let Some(urn) = attr.ext
        && body
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        body.remove(urn);
    }
}

/// The `value` of each of a user's emails.
pub fn email_values(body: &Body) -> impl Iterator<Item = &str> {
    body.get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("value").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind};
    use serde_json::json;

    #[test]
    fn rejects_what_would_lose_data() {
        let e = normalize(Kind::User, &json!({"userName": "a", "active": "yes"})).unwrap_err();
        assert_eq!(
            e.scim_type,
            Some(crate::scim::error::ScimType::InvalidValue)
        );
        assert!(e.detail.contains("active"), "{}", e.detail);
        let e = normalize(Kind::User, &json!({"name": {"givenName": "x"}})).unwrap_err();
        assert!(e.detail.contains("userName"));
        let e = normalize(Kind::User, &json!({"userName": {"x": 1}})).unwrap_err();
        assert_eq!(e.status, 400);
        // A bare string where an object with a value belongs (an email) is refused too.
        for bad in [
            json!({"userName": "a", "emails": "a@x"}),
            json!({"userName": "a", "emails": ["a@x"]}),
        ] {
            let e = normalize(Kind::User, &bad).unwrap_err();
            assert!(
                e.detail.contains("must be a complex object"),
                "{}",
                e.detail
            );
        }
        // A singular complex attribute in a list of one is that one (Entra's older manager
        // form); in a list of two it is refused.
        let ent = crate::scim::schema::ENTERPRISE_SCHEMA;
        let one =
            json!({"userName": "a", (ent): {"manager": [{"$ref": "../Users/m", "value": "m"}]}});
        assert_eq!(
            normalize(Kind::User, &one).unwrap().body[ent]["manager"]["value"],
            "m"
        );
        let two = json!({"userName": "a", (ent): {"manager": [{"value": "m"}, {"value": "n"}]}});
        let e = normalize(Kind::User, &two).unwrap_err();
        assert!(
            e.detail.contains("must be a complex object"),
            "{}",
            e.detail
        );
        // A number or boolean where a string belongs: refused, saying what to send.
        let e = normalize(Kind::User, &json!({"userName": 5})).unwrap_err();
        assert!(
            e.detail.contains("got the number 5 (send \"5\")"),
            "{}",
            e.detail
        );
        for bad in [
            json!({"userName": true}),
            json!({"userName": "a", "emails": [{"value": 123}]}),
            json!({"userName": "a", "title": 1.5}),
        ] {
            assert_eq!(
                normalize(Kind::User, &bad).unwrap_err().status,
                400,
                "{bad}"
            );
        }
        let e = normalize(Kind::Group, &json!({"members": []})).unwrap_err();
        assert!(e.detail.contains("displayName"));
        assert!(normalize(Kind::User, &json!([1])).is_err());
        for (kind, body) in [
            (Kind::User, json!({"userName": "   "})),
            (Kind::User, json!({"userName": "\u{2003}"})),
            (Kind::Group, json!({"displayName": " \u{a0} "})),
        ] {
            let e = normalize(kind, &body).unwrap_err();
            assert!(e.detail.contains("must not be blank"), "{}", e.detail);
        }
        // A tab is blank too, and a control character before that.
        let e = normalize(Kind::User, &json!({"userName": "\t"})).unwrap_err();
        assert!(e.detail.contains("control characters"), "{}", e.detail);
    }

    #[test]
    fn an_empty_boolean_says_nothing() {
        let got = normalize(
            Kind::User,
            &json!({"userName": "a", "active": " ", "emails": [{"value": "a@x", "primary": ""}]}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(got.body),
            json!({"userName": "a", "emails": [{"value": "a@x"}]})
        );
        assert_eq!(got.keep, vec!["active".to_string()]);
    }

    #[test]
    fn a_put_without_active_keeps_the_stored_one() {
        let old = json!({"userName": "a", "active": false});
        let Value::Object(old) = old else {
            unreachable!()
        };
        for body in [
            json!({"userName": "a", "title": "t"}),
            json!({"userName": "a", "active": null}),
        ] {
            let mut got = normalize(Kind::User, &body).unwrap();
            assert_eq!(got.keep, vec!["active".to_string()], "{body}");
            keep_from_old(Kind::User, &old, &mut got.body, &got.keep);
            assert_eq!(got.body.get("active"), Some(&Value::Bool(false)), "{body}");
        }
        let stated = normalize(Kind::User, &json!({"userName": "a", "active": true})).unwrap();
        assert!(stated.keep.is_empty());
        assert!(
            normalize(Kind::Group, &json!({"displayName": "g"}))
                .unwrap()
                .keep
                .is_empty()
        );
    }

    #[test]
    fn only_one_primary_and_empty_manager_is_none() {
        let raw = json!({"userName": "u",
            "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": "true"}],
            (ENTERPRISE_SCHEMA): {"manager": {"value": "", "displayName": " "}}});
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(got.body["emails"][1]["primary"], json!(false));
        assert!(!got.body.contains_key(ENTERPRISE_SCHEMA));
    }
}
