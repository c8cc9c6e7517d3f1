//! The values of a multi-valued attribute: each entry once, at most `MAX_VALUES` of them,
//! at most one primary, and a PATCH `add` appended to them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::Value;

use crate::scim::error::{ScimError, ScimResult};
use crate::scim::fold::fold;
use crate::scim::schema::AttrDef;

/// Whether a multi-valued entry holds anything besides the words about it (`type`,
/// `primary`, `display`).
pub(super) fn carries_data(entry: &Value) -> bool {
    entry.as_object().is_some_and(|m| {
        m.keys()
            .any(|k| !matches!(k.as_str(), "type" | "primary" | "display"))
    })
}

/// Most values one multi-valued attribute holds (a user's emails, roles, entitlements):
/// enough for any person, and it keeps each record and each filter over it small.
pub const MAX_VALUES: usize = 1000;

/// 400 when a multi-valued attribute would hold more than `MAX_VALUES` values.
pub fn check_count(def: &AttrDef, n: usize) -> ScimResult<()> {
    if n <= MAX_VALUES {
        return Ok(());
    }
    Err(ScimError::invalid_value(format!(
        "\"{}\" would hold {n} values; at most {MAX_VALUES} are accepted",
        def.name
    )))
}

/// Append `item` to `list` unless `seen` (sameness keys to positions in `list`) holds an
/// entry equal to it but for `primary`; that entry then becomes primary if `item` was. True
/// when appended.
pub(super) fn push_once(
    def: &AttrDef,
    list: &mut Vec<Value>,
    seen: &mut HashMap<String, usize>,
    item: Value,
) -> bool {
    match seen.entry(sameness_key(def, &item)) {
        Entry::Occupied(e) => {
            if item.get("primary") == Some(&Value::Bool(true))
                && let Some(Value::Object(m)) = list.get_mut(*e.get())
            {
                m.insert("primary".into(), Value::Bool(true));
            }
            false
        }
        Entry::Vacant(e) => {
            e.insert(list.len());
            list.push(item);
            true
        }
    }
}

/// What two entries equal but for `primary` share: their other members, in name order, the
/// text of those not `caseExact` folded as filters compare it. Such entries are kept once
/// (Entra's `Replace emails[type eq "work"].value` on two work entries would otherwise leave
/// two identical ones; `a@x.com` added beside `A@X.COM` is a value already there, RFC 7644
/// §3.5.2.1).
fn sameness_key(def: &AttrDef, v: &Value) -> String {
    let as_compared = |exact: bool, v: &Value| match v {
        Value::String(s) if !exact => Value::String(fold(s)),
        other => other.clone(),
    };
    match v {
        Value::Object(m) => {
            let mut parts: Vec<(&String, Value)> = m
                .iter()
                .filter(|(k, _)| k.as_str() != "primary")
                .map(|(k, v)| (k, as_compared(def.sub(k).is_none_or(|s| s.case_exact), v)))
                .collect();
            parts.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::to_string(&parts).unwrap_or_default()
        }
        other => as_compared(def.case_exact, other).to_string(),
    }
}

/// A PATCH `add` of `new` to `list`: each entry is appended (RFC 7644 §3.5.2.1), a second
/// work email beside the first included, unless equal but for `primary` to one there. Found
/// by key, so a thousand values added to a thousand cost no million comparisons.
pub(super) fn add_values(def: &AttrDef, list: &mut Vec<Value>, new: Vec<Value>) {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, e) in list.iter().enumerate() {
        by_key.entry(sameness_key(def, e)).or_insert(i);
    }
    for item in new {
        push_once(def, list, &mut by_key, item);
    }
}

/// A value made primary takes over (RFC 7644 §3.5.2): the others it is added to or set
/// among stop being primary, rather than `fix_primary` keeping the first.
pub fn demote_primary<'a>(others: impl Iterator<Item = &'a mut Value>) {
    for p in others.filter_map(|e| e.get_mut("primary")) {
        *p = Value::Bool(false);
    }
}

/// Whether `list` holds an entry made primary that carries no value: one a PATCH's filter
/// created (`emails[type eq "home"].primary`) and no later operation filled, which the
/// final normalisation drops.
pub fn holds_hollow_primary(list: &Value) -> bool {
    list.as_array().is_some_and(|l| {
        l.iter()
            .any(|e| e.get("primary") == Some(&Value::Bool(true)) && !carries_data(e))
    })
}

/// Once such an entry is dropped, the entry it took `primary` from (the one primary in
/// `before`) is primary again, unless another one now is: a takeover by no value must not
/// leave the user without a primary email.
pub fn give_back_primary(before: Option<&Value>, after: Option<&mut Value>) {
    let is_primary = |e: &Value| e.get("primary") == Some(&Value::Bool(true));
    let Some(after) = after.and_then(Value::as_array_mut) else {
        return;
    };
    if after.iter().any(is_primary) {
        return;
    }
    let without_primary = |e: &Value| {
        let mut e = e.clone();
        if let Value::Object(m) = &mut e {
            m.remove("primary");
        }
        e
    };
    let Some(was) = before
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|e| is_primary(e)))
    else {
        return;
    };
    let was = without_primary(was);
    if let Some(e) = after.iter_mut().find(|e| without_primary(e) == was) {
        e["primary"] = Value::Bool(true);
    }
}

/// At most one entry may carry `primary: true` (RFC 7643 §2.4): keep the first.
pub(super) fn fix_primary(list: &mut [Value]) {
    let mut seen = false;
    for item in list.iter_mut() {
        if let Some(Value::Bool(p)) = item.get_mut("primary") {
            if *p && seen {
                *p = false;
            }
            seen |= *p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::{SetMode, apply_key, normalize};
    use crate::scim::schema::Kind;
    use serde_json::json;

    #[test]
    fn many_values_dedupe_by_key_and_too_many_are_refused() {
        let emails = |n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"value": format!("u{i}@x"), "type": format!("t{i}")}))
                .collect()
        };
        let got = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": emails(MAX_VALUES)}),
        )
        .unwrap();
        assert_eq!(got.body["emails"].as_array().unwrap().len(), MAX_VALUES);
        let e = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": emails(MAX_VALUES + 1)}),
        )
        .unwrap_err();
        assert_eq!(
            e.scim_type,
            Some(crate::scim::error::ScimType::InvalidValue)
        );
        assert!(
            e.detail.contains("emails") && e.detail.contains("1000"),
            "{}",
            e.detail
        );
        // Equal but for primary (and key order): kept once, primary if either was.
        let got = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": [
                {"value": "a@x", "type": "work"}, {"value": "b@x"},
                {"type": "work", "primary": true, "value": "a@x"}, {"value": "b@x"}]}),
        )
        .unwrap();
        assert_eq!(
            got.body["emails"],
            json!([{"value": "a@x", "type": "work", "primary": true}, {"value": "b@x"}])
        );
    }

    #[test]
    fn entries_without_a_value_and_repeats_are_dropped() {
        // A OneLogin template with unset parameters, and an entry sent twice.
        let raw = json!({"userName": "a",
            "emails": [{"value": "", "type": "work", "primary": true},
                       {"value": "b@x", "type": "home"}, {"value": "b@x", "type": "home", "primary": true}],
            "phoneNumbers": {"value": "", "type": "work"},
            "addresses": [{"locality": "", "type": "work"}, {"locality": "Oslo", "type": "home"}]});
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(
            Value::Object(got.body),
            json!({"userName": "a",
                "emails": [{"value": "b@x", "type": "home", "primary": true}],
                "addresses": [{"locality": "Oslo", "type": "home"}]})
        );
    }

    #[test]
    fn an_added_entry_of_a_type_already_there_is_appended() {
        // Microsoft's reference tests POST two work emails: both are kept.
        let two = json!({"userName": "a", "emails": [
            {"value": "a@x", "type": "work", "primary": true}, {"value": "b@x", "type": "Work"}]});
        let got = normalize(Kind::User, &two).unwrap();
        assert_eq!(got.body["emails"], two["emails"]);
        // An add is appended (RFC 7644 §3.5.2.1, idp-notes §6.7), whatever its type: the
        // work email there keeps its value and stays primary, and one add may name a type
        // twice.
        let mut input = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": [{"value": "a@x", "type": "work", "primary": true}]}),
        )
        .unwrap();
        let add = json!([{"value": "new@x", "type": "WORK"}, {"value": "h@x", "type": "home"},
            {"value": "w3@x", "type": "work"}]);
        apply_key(Kind::User, "emails", &add, &mut input, SetMode::Add).unwrap();
        assert_eq!(
            input.body["emails"],
            json!([{"value": "a@x", "type": "work", "primary": true}, {"value": "new@x", "type": "WORK"},
                {"value": "h@x", "type": "home"}, {"value": "w3@x", "type": "work"}])
        );
        // The same entry again adds nothing; with `primary` it takes over as primary.
        let again = json!([{"value": "new@x", "type": "WORK", "primary": true}]);
        apply_key(Kind::User, "emails", &again, &mut input, SetMode::Add).unwrap();
        let emails = input.body["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 4);
        assert_eq!(emails[0]["primary"], json!(false));
        assert_eq!(emails[1]["primary"], json!(true));
        // Nor does it in other letters: an email's value and type compare without case
        // (caseExact false), as in filters; the entry there keeps its spelling.
        let again = json!([{"value": "NEW@X", "type": "work"}]);
        apply_key(Kind::User, "emails", &again, &mut input, SetMode::Add).unwrap();
        assert_eq!(input.body["emails"].as_array().unwrap().len(), 4);
        assert_eq!(input.body["emails"][1]["value"], json!("new@x"));
        let twice = json!({"userName": "a", "emails": [
            {"value": "a@x.com", "type": "work"}, {"value": "A@X.COM", "type": "work"}]});
        let got = normalize(Kind::User, &twice).unwrap();
        assert_eq!(
            got.body["emails"],
            json!([{"value": "a@x.com", "type": "work"}])
        );
    }

    #[test]
    fn roles_and_entitlements_of_one_type_are_appended_not_merged() {
        // Entra gives every app role the type WindowsAzureActiveDirectoryRole: a role added
        // beside one is a second role (RFC 7644 §3.5.2.1), and one add may carry several.
        let role = |v: &str| json!({"value": v, "type": "WindowsAzureActiveDirectoryRole"});
        let mut input = normalize(
            Kind::User,
            &json!({"userName": "a", "roles": [role("Admin")]}),
        )
        .unwrap();
        let add = json!([role("Reader"), role("Writer")]);
        apply_key(Kind::User, "roles", &add, &mut input, SetMode::Add).unwrap();
        assert_eq!(
            input.body["roles"],
            json!([role("Admin"), role("Reader"), role("Writer")])
        );
        // A role already there is not added twice.
        apply_key(
            Kind::User,
            "roles",
            &json!([role("Admin")]),
            &mut input,
            SetMode::Add,
        )
        .unwrap();
        assert_eq!(input.body["roles"].as_array().unwrap().len(), 3);
        let mut input = normalize(
            Kind::User,
            &json!({"userName": "a", "entitlements": [{"value": "E1", "type": "license"}]}),
        )
        .unwrap();
        let add = json!([{"value": "E2", "type": "license"}]);
        apply_key(Kind::User, "entitlements", &add, &mut input, SetMode::Add).unwrap();
        assert_eq!(
            input.body["entitlements"],
            json!([{"value": "E1", "type": "license"}, {"value": "E2", "type": "license"}])
        );
    }

    #[test]
    fn an_added_primary_takes_over() {
        let mut input = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}]}),
        )
        .unwrap();
        let add = json!([{"value": "b@x", "type": "home", "primary": true}, {"value": "a@x"}]);
        apply_key(Kind::User, "emails", &add, &mut input, SetMode::Add).unwrap();
        assert_eq!(
            input.body["emails"],
            json!([{"value": "a@x", "primary": false}, {"value": "b@x", "type": "home", "primary": true}])
        );
    }
}
