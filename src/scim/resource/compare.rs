//! A new body against the stored one: whether the two read the same, values compared without
//! order, and create-only values put back from the old body.

use serde_json::{Map, Value};

use super::{Body, container, container_mut, drop_empty_extension};
use crate::scim::schema::{Kind, Rt, resolve, split_urn};

/// Whether two bodies read the same in answers: an attribute with a default (`active`)
/// unset in one and set to that default in the other is no change, so a PATCH of
/// `active: true` on a user created without it moves neither version nor lastModified.
pub fn reads_the_same(kind: Kind, a: &Body, b: &Body) -> bool {
    if a == b {
        return true;
    }
    let defaults: Vec<_> = kind.schema().unset_values().collect();
    if defaults
        .iter()
        .all(|(name, _)| a.contains_key(*name) == b.contains_key(*name))
    {
        return false;
    }
    let filled = |x: &Body| {
        let mut x = x.clone();
        for (name, v) in &defaults {
            x.entry(*name).or_insert(Value::Bool(*v));
        }
        x
    };
    filled(a) == filled(b)
}

/// Put back the values `old` has at each of `paths` (attribute paths such as `timezone`,
/// `name.givenName` or `urn:...:User:costCenter`) into `new`. Returns the paths whose
/// change was undone. Used for create-only attributes: the IdP sets them once, and later
/// changes from it are ignored.
pub fn keep_from_old(
    kind: impl Into<Rt>,
    old: &Body,
    new: &mut Body,
    paths: &[String],
) -> Vec<String> {
    let kind: Rt = kind.into();
    let mut undone = Vec::new();
    for p in paths {
        let (urn, rest) = split_urn(kind, p);
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let Some(attr) = resolve(kind, urn, name) else {
            continue;
        };
        let sub = match sub {
            Some(s) => match attr.def.sub(s) {
                Some(d) => Some(d.name),
                None => continue,
            },
            None => None,
        };
        let get = |b: &Body| -> Option<Value> {
            let v = container(b, attr)?.get(attr.def.name)?;
            match sub {
                Some(s) => v.get(s).cloned(),
                None => Some(v.clone()),
            }
        };
        let (was, now) = (get(old), get(new));
        if was == now {
            continue;
        }
        undone.push(p.clone());
        let c = container_mut(new, attr);
        match (sub, was) {
            (None, Some(v)) => {
                c.insert(attr.def.name.to_string(), v);
            }
            (None, None) => {
                c.remove(attr.def.name);
            }
            (Some(s), was) => {
                let entry = c
                    .entry(attr.def.name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    match was {
                        Some(v) => {
                            m.insert(s.to_string(), v);
                        }
                        None => {
                            m.remove(s);
                        }
                    }
                    if m.is_empty() {
                        c.remove(attr.def.name);
                    }
                }
            }
        }
        drop_empty_extension(new, attr);
    }
    undone
}

/// The same value, where a multi-valued attribute's values may come in another order: they
/// have none (RFC 7643 §2.4), and an IdP's PUT need not keep the stored one.
pub(super) fn same_values(now: &Value, was: &Value) -> bool {
    match (now, was) {
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            let mut left: Vec<&Value> = b.iter().collect();
            a.iter().all(|v| match left.iter().position(|w| *w == v) {
                Some(i) => {
                    left.swap_remove(i);
                    true
                }
                None => false,
            })
        }
        _ => now == was,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::normalize;
    use crate::scim::schema::ENTERPRISE_SCHEMA;
    use serde_json::json;

    #[test]
    fn an_unset_active_reads_the_same_as_true_and_only_as_true() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let unset = body(json!({"userName": "a"}));
        let on = body(json!({"userName": "a", "active": true}));
        let off = body(json!({"userName": "a", "active": false}));
        assert!(reads_the_same(Kind::User, &unset, &on));
        assert!(reads_the_same(Kind::User, &on, &unset));
        assert!(!reads_the_same(Kind::User, &unset, &off));
        assert!(!reads_the_same(
            Kind::User,
            &on,
            &body(json!({"userName": "b"}))
        ));
        // Groups have no `active`: its presence is a difference like any other.
        assert!(!reads_the_same(Kind::Group, &unset, &on));
    }

    #[test]
    fn create_only_values_are_put_back() {
        let old = normalize(
            Kind::User,
            &json!({"userName": "u", "timezone": "Europe/Paris",
            "name": {"givenName": "A"}, (ENTERPRISE_SCHEMA): {"costCenter": "1"}}),
        )
        .unwrap()
        .body;
        let mut new = normalize(
            Kind::User,
            &json!({"userName": "u2", "timezone": "UTC",
            "name": {"givenName": "B"}}),
        )
        .unwrap()
        .body;
        let paths = vec![
            "timezone".to_string(),
            "name.givenName".into(),
            format!("{ENTERPRISE_SCHEMA}:costCenter"),
            "title".into(),
        ];
        let undone = keep_from_old(Kind::User, &old, &mut new, &paths);
        assert_eq!(undone.len(), 3);
        assert_eq!(new["timezone"], json!("Europe/Paris"));
        assert_eq!(new["userName"], json!("u2"));
        assert_eq!(new["name"]["givenName"], json!("A"));
        assert_eq!(new[ENTERPRISE_SCHEMA]["costCenter"], json!("1"));
    }
}
