//! Evaluation of a resolved filter on stored JSON.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::Value;

use super::resolve::{Scope, is_schemas, leaf, lookup};
use super::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::datetime;
use crate::scim::fold::fold;
use crate::scim::projection::Projection;
use crate::scim::schema::{AttrDef, AttrType, Rt};

/// A resource's `schemas` as its answers show them: the core schema and each extension
/// holding a value its answers may show (asked for, if `returned = "request"`): one holding
/// only `never` values, which no answer shows, is not told by a filter either.
fn schemas_of(kind: Rt, obj: &Value) -> Value {
    let core = Value::String(kind.kind.schema().id.to_string());
    let mut shown: serde_json::Map<String, Value> = kind
        .ext
        .iter()
        .filter_map(|ext| Some((ext.id.to_string(), obj.get(ext.id)?.clone())))
        .collect();
    let mut list = vec![core];
    list.extend(shown.keys().cloned().map(Value::String));
    shown.insert("schemas".into(), Value::Array(list));
    Projection::every_extension(kind).apply(kind, &mut shown);
    shown.remove("schemas").unwrap_or_default()
}

/// The leaf values at `p` in `obj`, each with the definition it compares as.
fn values_at<'v>(scope: Scope, obj: &'v Value, p: &AttrPath) -> Vec<(&'v Value, &'static AttrDef)> {
    let Some((def, sub, v)) = node_at(scope, obj, p) else {
        return Vec::new();
    };
    let Some(l) = leaf(def, sub) else {
        return Vec::new();
    };
    let pick = |el: &'v Value| -> Option<&'v Value> {
        if def.is_complex() {
            el.get(l.name)
        } else {
            Some(el)
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(pick).map(|x| (x, l)).collect(),
        other => pick(other).map(|x| vec![(x, l)]).unwrap_or_default(),
    }
}

/// The whole attribute `p` names in `obj`, with its definitions.
fn node_at<'v>(
    scope: Scope,
    obj: &'v Value,
    p: &AttrPath,
) -> Option<(&'static AttrDef, Option<&'static AttrDef>, &'v Value)> {
    let (def, sub) = lookup(scope, p)?;
    let container = match &p.urn {
        Some(u) if matches!(scope, Scope::Resource(_)) => obj.get(u.as_str()),
        _ => Some(obj),
    };
    // An unset attribute with a default (`active`) matches as the responses show it.
    static UNSET: [Value; 2] = [Value::Bool(false), Value::Bool(true)];
    let unset = match scope {
        Scope::Resource(_) => def.unset.map(|b| &UNSET[usize::from(b)]),
        Scope::Element(_) => None,
    };
    container
        .and_then(|c| c.get(def.name))
        .or(unset)
        .map(|v| (def, sub, v))
}

/// `pr`: a complex attribute named without a sub-attribute (`name pr`, `addresses pr`) is
/// present when it holds a non-empty node (RFC 7644 §3.4.2.2), whatever its sub-attributes.
fn present_at(scope: Scope, obj: &Value, p: &AttrPath) -> bool {
    match node_at(scope, obj, p) {
        Some((def, None, v)) if def.is_complex() => match v {
            Value::Array(items) => items.iter().any(present),
            other => present(other),
        },
        _ => values_at(scope, obj, p).iter().any(|(v, _)| present(v)),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `fold(e)`, remembered for the filter values this thread compared with last. A filter is
/// evaluated on every resource of a scan or every member of a group with the same values,
/// and folding a long non-ASCII one (decomposition, case mapping, composition) each time
/// made one request cost seconds of CPU, on the writer every tenant's writes wait for when
/// the filter is a group PATCH's. Kept by size, not by count, and well above the longest
/// filter allowed by default (`max_filter_length`, 8 KiB): all of one filter's values fit,
/// however many there are (with a count, a tenth value pushed out the first each time round).
fn folded(e: &str) -> Rc<str> {
    const KEPT_BYTES: usize = 64 * 1024;
    FOLDS.with_borrow_mut(|last| {
        if let Some(f) = last.map.get(e) {
            return f.clone();
        }
        let f: Rc<str> = Rc::from(fold(e));
        if e.len() > KEPT_BYTES {
            return f;
        }
        // Looked up by hash: 64 KiB of short values is thousands of them, and a search
        // through them on every comparison made each new filter's scan slower than the last.
        while last.held + e.len() > KEPT_BYTES {
            let Some(old) = last.order.pop_front() else {
                break;
            };
            last.held -= old.len();
            last.map.remove(&old);
        }
        let raw: Rc<str> = Rc::from(e);
        last.held += raw.len();
        last.order.push_back(raw.clone());
        last.map.insert(raw, f.clone());
        f
    })
}

thread_local! {
    static FOLDS: RefCell<Folds> = RefCell::default();
}

/// Bytes of values `folded` keeps on this thread (each kept value once in each list).
#[cfg(test)]
fn kept_bytes() -> usize {
    FOLDS.with_borrow(|f| {
        assert_eq!(f.map.len(), f.order.len());
        assert_eq!(f.held, f.order.iter().map(|v| v.len()).sum::<usize>());
        f.held
    })
}

/// The folds `folded` keeps: by value, and in the order they came (the oldest go first).
#[derive(Default)]
struct Folds {
    map: std::collections::HashMap<Rc<str>, Rc<str>>,
    order: std::collections::VecDeque<Rc<str>>,
    held: usize,
}

/// A stored number against a filter's (as written, quoted or not): whole numbers exactly, as
/// doubles 2^53 + 1 would equal 2^53; others as doubles.
fn compare_numbers(a: &serde_json::Number, e: &str) -> Option<std::cmp::Ordering> {
    match (whole(a), e.parse::<i128>()) {
        (Some(a), Ok(e)) => Some(a.cmp(&e)),
        _ => a.as_f64()?.partial_cmp(&e.parse::<f64>().ok()?),
    }
}

/// A JSON number written as a whole number (no point, no exponent), exactly.
fn whole(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn compare_one(actual: &Value, def: &AttrDef, op: CompareOp, expected: &CompValue) -> bool {
    let ord = |o: Ordering| match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    };
    match (actual, expected) {
        (Value::String(a), CompValue::Str(e)) => {
            // Instants for eq and the orderings; co, sw and ew look at the text as written.
            if def.ty == AttrType::DateTime
                && !op.substring()
                && let (Some(x), Some(y)) = (datetime::parse(a), datetime::parse(e))
            {
                return ord(x.cmp(&y));
            }
            let text = |a: &str, e: &str| match op {
                CompareOp::Co => a.contains(e),
                CompareOp::Sw => a.starts_with(e),
                CompareOp::Ew => a.ends_with(e),
                _ => ord(a.cmp(e)),
            };
            if def.case_exact {
                text(a, e)
            } else {
                text(&fold(a), &folded(e))
            }
        }
        // Below 2^53 a double holds both sides exactly: the literal read once, at parse.
        (Value::Number(a), CompValue::Num(e, _))
            if e.abs() < crate::scim::resource::EXACT_IN_A_DOUBLE =>
        {
            a.as_f64().and_then(|a| a.partial_cmp(e)).is_some_and(ord)
        }
        (Value::Number(a), CompValue::Num(_, text) | CompValue::Str(text)) => {
            compare_numbers(a, text.trim()).is_some_and(ord)
        }
        (Value::String(a), CompValue::Num(e, _)) => a
            .parse::<f64>()
            .ok()
            .and_then(|a| a.partial_cmp(e))
            .is_some_and(ord),
        (Value::Bool(a), CompValue::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            // Reached for a multi-valued attribute: `emails.primary ne false`.
            CompareOp::Ne => a != e,
            _ => false,
        },
        _ => false,
    }
}

fn eval(scope: Scope, f: &Filter, obj: &Value) -> bool {
    match f {
        // `schemas` is not stored: the condition is judged on what the answer would show.
        Filter::Compare { path, .. } | Filter::Present(path)
            if is_schemas(path) && obj.get("schemas").is_none() =>
        {
            let Scope::Resource(kind) = scope else {
                return false;
            };
            let shown = serde_json::json!({ "schemas": schemas_of(kind, obj) });
            eval(scope, f, &shown)
        }
        Filter::And(a, b) => eval(scope, a, obj) && eval(scope, b, obj),
        Filter::Or(a, b) => eval(scope, a, obj) || eval(scope, b, obj),
        Filter::Not(a) => !eval(scope, a, obj),
        Filter::Present(p) => present_at(scope, obj, p),
        // RFC 7644 §3.4.2.2: on a multi-valued attribute a filter matches if any value
        // matches, `ne` too (`emails.type ne "work"`: some email is not a work one). Use
        // `not (... eq ...)` for "none equals".
        Filter::Compare {
            path,
            op: CompareOp::Ne,
            value,
        } if *value != CompValue::Null
            && lookup(scope, path).is_some_and(|(def, _)| def.multi_valued) =>
        {
            values_at(scope, obj, path)
                .iter()
                .any(|(v, def)| compare_one(v, def, CompareOp::Ne, value))
        }
        Filter::Compare {
            path,
            op: CompareOp::Ne,
            value,
        } => !eval(
            scope,
            &Filter::Compare {
                path: path.clone(),
                op: CompareOp::Eq,
                value: value.clone(),
            },
            obj,
        ),
        Filter::Compare { path, op, value } => {
            let vals = values_at(scope, obj, path);
            if *value == CompValue::Null {
                return *op == CompareOp::Eq && !vals.iter().any(|(v, _)| present(v));
            }
            vals.iter().any(|(v, def)| compare_one(v, def, *op, value))
        }
        Filter::ValuePath { path, filter } => {
            let Some((def, _)) = lookup(scope, path) else {
                return false;
            };
            let container = match &path.urn {
                Some(u) if matches!(scope, Scope::Resource(_)) => obj.get(u.as_str()),
                _ => Some(obj),
            };
            match container.and_then(|c| c.get(def.name)) {
                Some(Value::Array(items)) => {
                    items.iter().any(|el| eval(Scope::Element(def), filter, el))
                }
                Some(el @ Value::Object(_)) => eval(Scope::Element(def), filter, el),
                _ => false,
            }
        }
    }
}

/// Evaluate a resolved filter against a resource's JSON (core attributes at the top level,
/// extension attributes under their URN, `id` and `meta` included by the caller).
pub fn matches(f: &Filter, kind: impl Into<Rt>, resource: &Value) -> bool {
    let kind: Rt = kind.into();
    eval(Scope::Resource(kind), f, resource)
}

/// The conditions of `f` (comparisons, presence tests and value paths) under its `and`,
/// `or` and `not`, each with the attribute it is on.
pub fn conditions(f: &Filter) -> Vec<(&Filter, &AttrPath)> {
    fn walk<'f>(f: &'f Filter, out: &mut Vec<(&'f Filter, &'f AttrPath)>) {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Filter::Not(a) => walk(a, out),
            Filter::Compare { path, .. }
            | Filter::Present(path)
            | Filter::ValuePath { path, .. } => out.push((f, path)),
        }
    }
    let mut out = Vec::new();
    walk(f, &mut out);
    out
}

/// The conditions of `f` on the core attribute `name`: for a multi-valued one, each can be
/// decided a part of its values at a time (see `every_part`).
pub fn conditions_on<'f>(f: &'f Filter, name: &str) -> Vec<&'f Filter> {
    conditions(f)
        .into_iter()
        .filter(|(_, p)| p.urn.is_none() && p.name == name)
        .map(|(c, _)| c)
        .collect()
}

/// How a condition on a multi-valued attribute follows from parts of its values: `eq null`
/// holds only if it holds on every part (true), the others, `ne` included, if they hold on
/// some part (false). An attribute with no values counts as one empty part.
pub fn every_part(condition: &Filter) -> bool {
    matches!(
        condition,
        Filter::Compare {
            op: CompareOp::Eq,
            value: CompValue::Null,
            ..
        }
    )
}

/// Evaluate like `matches`, except that the conditions `decided` names (by address, as
/// `conditions_on` gives them) take the given answer.
pub fn matches_deciding(
    f: &Filter,
    kind: impl Into<Rt>,
    resource: &Value,
    decided: &[(&Filter, bool)],
) -> bool {
    fn go(scope: Scope, f: &Filter, obj: &Value, decided: &[(&Filter, bool)]) -> bool {
        if let Some((_, answer)) = decided.iter().find(|(c, _)| std::ptr::eq(*c, f)) {
            return *answer;
        }
        match f {
            Filter::And(a, b) => go(scope, a, obj, decided) && go(scope, b, obj, decided),
            Filter::Or(a, b) => go(scope, a, obj, decided) || go(scope, b, obj, decided),
            Filter::Not(a) => !go(scope, a, obj, decided),
            leaf => eval(scope, leaf, obj),
        }
    }
    go(Scope::Resource(kind.into()), f, resource, decided)
}

/// Evaluate a resolved element filter against one element of `def`.
pub fn matches_element(f: &Filter, def: &'static AttrDef, element: &Value) -> bool {
    eval(Scope::Element(def), f, element)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::tests::{bad, m};
    use crate::scim::filter::{parse_element_filter, parse_for};
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind, USER_SCHEMA};
    use serde_json::json;

    #[test]
    fn remembered_folds_are_each_values_own() {
        // Many values, and back again: each fold is its own value's.
        let values: Vec<String> = (0..20).map(|i| format!("ΣΊΣΥΦΟΣ-{i}-Ǆ")).collect();
        for v in values
            .iter()
            .chain(values.iter().rev())
            .chain(values.iter())
        {
            assert_eq!(&*folded(v), fold(v), "{v}");
        }
        // Values longer than all that is kept are folded each time, and right.
        let long = "Σ".repeat(40_000);
        assert_eq!(&*folded(&long), fold(&long));
        assert_eq!(&*folded(&values[0]), fold(&values[0]));
        // Past what is kept, the oldest go and what is kept stays within its bytes.
        for i in 0..20_000 {
            let v = format!("Ǆ{i}");
            assert_eq!(&*folded(&v), fold(&v));
        }
        let held = kept_bytes();
        assert!(held <= 64 * 1024 && held > 60 * 1024, "{held}");
        // A filter on many resources finds the same as before the memo.
        let f = parse_for(Kind::User, "title co \"ΣΊΣ\"").unwrap();
        assert!(matches(&f, Kind::User, &json!({"title": "ο σίσυφος"})));
        assert!(!matches(&f, Kind::User, &json!({"title": "sisyphus"})));
    }

    #[test]
    fn conditions_on_members_decided_part_by_part_agree_with_the_whole_list() {
        let members: Vec<Value> = ["u1", "u2", "g1", "u3", "g2"]
            .iter()
            .map(|v| json!({"value": v, "type": if v.starts_with('g') { "Group" } else { "User" }}))
            .collect();
        let filters = [
            "members.type eq \"Group\"",
            "members.type ne \"Group\"",
            "members.type ne \"Robot\"",
            "members.value co \"3\" and not (members.value eq \"u9\")",
            "members[type eq \"User\" and value sw \"u\"] or displayName eq \"x\"",
            "members.type eq \"User\" and members.type eq \"Group\"",
            "members eq null",
            "members ne null",
            "members.value gt null",
            "not (members pr) or displayName pr",
        ];
        let whole = |list: &[Value]| json!({"displayName": "d", "members": list});
        for text in filters {
            let f = parse_for(Kind::Group, text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let conditions = conditions_on(&f, "members");
            assert!(!conditions.is_empty(), "{text}");
            for list in [&members[..], &members[..1], &[]] {
                for part in [1, 2, 5] {
                    let mut decided: Vec<(&Filter, bool)> =
                        conditions.iter().map(|c| (*c, every_part(c))).collect();
                    let parts: Vec<&[Value]> = match list.is_empty() {
                        true => vec![list],
                        false => list.chunks(part).collect(),
                    };
                    for chunk in parts {
                        for (c, answer) in decided.iter_mut() {
                            let here = matches(c, Kind::Group, &json!({ "members": chunk }));
                            match every_part(c) {
                                true => *answer &= here,
                                false => *answer |= here,
                            }
                        }
                    }
                    let body = json!({"displayName": "d"});
                    assert_eq!(
                        matches_deciding(&f, Kind::Group, &body, &decided),
                        matches(&f, Kind::Group, &whole(list)),
                        "{text} on {} members in parts of {part}",
                        list.len()
                    );
                }
            }
        }
    }

    #[test]
    fn every_operator() {
        assert!(m("userName eq \"bjensen@example.com\""));
        assert!(!m("userName ne \"bjensen@example.com\""));
        assert!(m("userName ne \"other\""));
        assert!(m("title co \"our\"") && m("title sw \"tour\"") && m("title ew \"GUIDE\""));
        assert!(!m("title sw \"guide\""));
        assert!(m("name.familyName gt \"A\"") && m("name.familyName ge \"Jensen\""));
        assert!(m("name.familyName lt \"K\"") && m("name.familyName le \"jensen\""));
        assert!(!m("name.familyName lt \"Jensen\""));
        assert!(m("title pr") && !m("nickName pr"));
        // A complex attribute without a sub-attribute is present when it holds anything.
        assert!(m("name pr") && m("emails pr") && !m("addresses pr"));
        assert!(m(&format!("{ENTERPRISE_SCHEMA}:manager pr")) && !m("name.middleName pr"));
        assert!(!m("not (name pr)"));
        assert!(m("nickName eq null") && !m("title eq null"));
        assert!(m("active eq true") && m("active eq \"True\"") && !m("active eq false"));
        // `ne` on a multi-valued boolean: some value differs (the one email is primary).
        assert!(m("emails.primary ne false") && !m("emails.primary ne true"));
        assert!(m("active ne false") && !m("active ne true"));
        // `schemas` (RFC 7644 §3.4.2.2, Figure 2), from the extensions the user holds.
        assert!(m(&format!("schemas eq \"{ENTERPRISE_SCHEMA}\"")) && m("schemas pr"));
        assert!(m(&format!("SCHEMAS eq \"{}\"", USER_SCHEMA.to_uppercase())));
        assert!(!m("schemas eq \"urn:example:other\""));
        assert!(m("not (schemas eq \"urn:example:other\")"));
        assert!(m("nickName ne \"x\""), "an absent attribute is ne anything");
        // Multi-valued: some value differs (RFC 7644 §3.4.2.2); none equals is `not eq`.
        assert!(m("emails.type ne \"work\"") && !m("not (emails.type eq \"work\")"));
        assert!(m("emails.type ne \"other\"") && m("emails.value ne null"));
        assert!(!m("addresses.type ne \"work\""), "no values: none differs");
    }

    #[test]
    fn an_unset_active_matches_as_the_true_that_responses_show() {
        let unset = json!({"userName": "a"});
        let off = json!({"userName": "b", "active": false});
        let on = |f: &str, u: &Value| matches(&parse_for(Kind::User, f).unwrap(), Kind::User, u);
        assert!(on("active eq true", &unset) && !on("active eq false", &unset));
        assert!(on("active pr", &unset) && !on("active eq null", &unset));
        assert!(on("userName sw \"a\" and active eq true", &unset));
        assert!(on("active eq false", &off) && !on("active eq true", &off));
    }

    #[test]
    fn dates_compare_as_instants() {
        assert!(m("meta.lastModified gt \"2011-05-13T04:42:34Z\""));
        assert!(
            m("meta.lastModified gt \"2011-08-01T11:29:49-07:00\""),
            "one second earlier in another offset"
        );
        assert!(!m("meta.lastModified gt \"2011-08-01T11:29:50-07:00\""));
        // Without a zone (xsd:dateTime allows it): UTC.
        assert!(m("meta.lastModified eq \"2011-08-01T18:29:49.793\""));
        assert!(!m("meta.lastModified gt \"2011-08-01T18:29:49.793\""));
        assert!(m("meta.created lt \"2015-10-10T14:38:21.8617979-07:00\""));
        assert!(
            m("meta.Created lt 2015-10-10T14:38:21.8617979-07:00"),
            "unquoted date"
        );
        // Something that is no date would match nothing, silently: refused instead.
        for f in [
            "meta.lastModified gt \"not-a-date\"",
            "meta.created eq \"2011-08-01\"",
        ] {
            assert!(bad(f).detail.contains("not a date-time"), "{f}");
        }
        assert!(!m("meta.created eq null") && m("meta.created sw \"2011-08\""));
        // co, sw and ew read the text as written, a whole date-time too.
        assert!(m("meta.created sw \"2011-08-01T18:29:49.793Z\""));
        assert!(m("meta.created sw \"2011-08-01T18:29:49\""));
        assert!(!m("meta.created sw \"2011-08-01T11:29:49-07:00\""));
    }

    #[test]
    fn element_filters() {
        let def = Kind::Group.schema().attr("members").unwrap();
        let f = parse_element_filter(def, "VALUE eq \"a\" or type eq \"Group\"").unwrap();
        assert!(matches_element(
            &f,
            def,
            &json!({"value": "a", "type": "User"})
        ));
        assert!(matches_element(
            &f,
            def,
            &json!({"value": "b", "type": "Group"})
        ));
        assert!(!matches_element(
            &f,
            def,
            &json!({"value": "b", "type": "User"})
        ));
        assert!(parse_element_filter(def, "nope eq \"a\"").is_err());
    }
}
