//! A client's body read key by key into an `Input`: the canonical body, the members, the
//! values to keep, and what was ignored (unknown attributes and schema URNs) for the log.

use serde_json::{Map, Value};

use super::checks::{check_required, drop_dangling_references, is_reference};
use super::members::normalize_members;
use super::multi_valued::{add_values, check_count, demote_primary, fix_primary};
use super::values::{normalize_attr, normalize_simple};
use super::{Body, container_mut, drop_empty_extension};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{
    AttrDef, AttrType, GROUP_SCHEMA, Kind, Mutability, Returned, Rt, USER_SCHEMA,
    resolve_as_written, split_urn,
};

/// What normalisation dropped, so the caller can log it per tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub attributes: Vec<String>,
    pub schemas: Vec<String>,
}

/// At most this many names of each kind are kept for the log line, each cut to
/// `IGNORED_NAME_MAX` bytes: a body of a hundred thousand unknown keys is one short line.
const IGNORED_MAX: usize = 20;
const IGNORED_NAME_MAX: usize = 100;

impl Ignored {
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.schemas.is_empty()
    }

    /// Note an attribute name or path. A value filter's brackets hold values (an email
    /// address, say, which may itself hold brackets or quotes), and the log gets names only:
    /// everything from the first `[` to the last `]` is kept as `[…]`.
    pub fn attr(&mut self, name: &str) {
        let named = match (name.find('['), name.rfind(']')) {
            (Some(open), Some(close)) if close > open => {
                format!("{}[…]{}", &name[..open], &name[close + 1..])
            }
            (Some(open), _) => format!("{}[…]", &name[..open]),
            _ => name.to_string(),
        };
        note(&mut self.attributes, named);
    }

    pub fn schema(&mut self, urn: &str) {
        note(&mut self.schemas, urn.to_string());
    }
}

fn note(list: &mut Vec<String>, mut name: String) {
    if list.len() >= IGNORED_MAX {
        return;
    }
    if name.len() > IGNORED_NAME_MAX {
        let mut cut = IGNORED_NAME_MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push('…');
    }
    if !list.contains(&name) {
        list.push(name);
    }
}

/// A client-written resource after normalisation.
#[derive(Debug, Default)]
pub struct Input {
    pub body: Body,
    /// `members` of a Group as given (each `{"value", "type"?}`), `None` when absent.
    pub members: Option<Vec<Value>>,
    /// `id` as the client sent it, to check against the path id on PUT.
    pub id: Option<String>,
    /// Attributes left out, null or given as `""` whose absence would change state
    /// (`active`): a PUT keeps their stored value instead.
    pub keep: Vec<String>,
    pub ignored: Ignored,
    /// In a POST or PUT body, each attribute written so far (its full path, and the key that
    /// named it): one named twice, as `userName` and under its URN, or as `name` and
    /// `name.givenName`, is refused. In a PATCH each key is its own path, applied in order.
    pub(crate) given: Option<std::collections::HashMap<String, Given>>,
}

/// How a body named one attribute (by its full path): whole, by the key that did, or its
/// sub-attributes one by one, each with its key.
#[derive(Debug, Default)]
pub(crate) struct Given {
    whole: Option<String>,
    subs: Vec<(&'static str, String)>,
}

/// Normalise a POST/PUT body.
pub fn normalize(kind: impl Into<Rt>, raw: &Value) -> ScimResult<Input> {
    let kind: Rt = kind.into();
    let Value::Object(obj) = raw else {
        return Err(ScimError::invalid_syntax(format!(
            "the request body must be a JSON object describing a {}",
            kind.as_str()
        )));
    };
    let mut input = Input {
        given: Some(std::collections::HashMap::new()),
        ..Input::default()
    };
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            check_schemas(kind, value, &mut input.ignored)?;
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            // Blank is absent, as `null` is (a template's placeholder left unset); a number
            // or an object is no id, and differs from any (refused in a PUT).
            input.id = match value {
                Value::Null => None,
                Value::String(s) if s.trim().is_empty() => None,
                Value::String(s) => Some(s.trim().to_string()),
                other => Some(other.to_string()),
            };
            continue;
        }
        apply_key(kind, key, value, &mut input, SetMode::Replace)?;
    }
    keep_unseen(kind, &mut input);
    input.given = None; // the body is read: later keys applied to it are paths
    drop_dangling_references(kind, &mut input.body);
    check_required(kind, &input.body)?;
    // A PUT that leaves `active` out (or null) says nothing about it: read as its default it
    // would reactivate a deactivated user whenever an IdP's template omits it.
    for (name, _) in kind.schema().unset_values() {
        if !input.body.contains_key(name) && !input.keep.iter().any(|k| k == name) {
            input.keep.push(name.to_string());
        }
    }
    Ok(input)
}

/// An attribute returned only on request, or never, was not in the GET a client read before
/// its PUT (Okta's GET, change, PUT): a PUT that leaves it out keeps it rather than clearing
/// a value the client never saw. One the body names, even as null, is the client's to set.
/// So for such a sub-attribute of a single-valued complex one the body gives: left out of
/// it, it is kept (the attribute left out whole is cleared whole, hidden parts and all).
fn keep_unseen(kind: Rt, input: &mut Input) {
    let Some(given) = &input.given else {
        return;
    };
    let hidden = |d: &AttrDef| {
        matches!(d.returned, Returned::Never | Returned::Request)
            && !matches!(d.mutability, Mutability::ReadOnly | Mutability::WriteOnly)
    };
    let core = kind.schema().attributes.iter().map(|d| (None, d));
    let ext = kind
        .extensions()
        .iter()
        .flat_map(|e| e.attributes.iter().map(move |d| (Some(e.id), d)));
    let mut keep = Vec::new();
    // Paths as `keep_from_old` takes them, made only for what is kept (every create passes
    // here too).
    let path = |urn: Option<&str>, name: &str| match urn {
        Some(urn) => format!("{urn}:{name}"),
        None => name.to_string(),
    };
    for (urn, def) in core.chain(ext) {
        if hidden(def) {
            if !given.contains_key(&format!("{}:{}", urn.unwrap_or(kind.schema().id), def.name)) {
                keep.push(path(urn, def.name));
            }
            continue;
        }
        if !def.is_complex() || def.multi_valued {
            continue;
        }
        let container = match urn {
            Some(urn) => input.body.get(urn).and_then(Value::as_object),
            None => Some(&input.body),
        };
        let Some(Value::Object(value)) = container.and_then(|c| c.get(def.name)) else {
            continue;
        };
        for sub in def.sub_attributes.iter().filter(|d| hidden(d)) {
            if !value.contains_key(sub.name) {
                keep.push(format!("{}.{}", path(urn, def.name), sub.name));
            }
        }
    }
    input.keep.extend(keep);
}

/// Unknown schema URNs are noted and ignored (IdP templates carry their own), but a body that
/// says it is another kind of thing (a Group sent to /Users, a PatchOp sent to PUT) is
/// refused: taking it would store something the client did not mean.
fn check_schemas(kind: impl Into<Rt>, value: &Value, ignored: &mut Ignored) -> ScimResult<()> {
    let kind: Rt = kind.into();
    let known = |u: &str| u.eq_ignore_ascii_case(kind.schema().id) || kind.extension(u).is_some();
    for s in value.as_array().into_iter().flatten() {
        let Some(u) = s.as_str().filter(|u| !known(u)) else {
            continue;
        };
        let other = [USER_SCHEMA, GROUP_SCHEMA]
            .into_iter()
            .any(|c| c.eq_ignore_ascii_case(u))
            || u.to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:api:messages:2.0:");
        if other {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" names {u}, but this endpoint takes a {} ({})",
                kind.as_str(),
                kind.schema().id
            )));
        }
        ignored.schema(u);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// PUT/POST and PATCH replace: complex values merge (§3.5.2.3), multi-valued ones replace.
    Replace,
    /// PATCH add: multi-valued values are appended.
    Add,
}

/// Apply one top-level key of a body (or of a PATCH no-path value) to `input`. The key may be
/// a plain attribute name, an extension URN holding an object, a URN-qualified attribute, or a
/// dotted `attr.sub` path (Entra sends the last two in no-path PATCH values).
pub fn apply_key(
    kind: impl Into<Rt>,
    key: &str,
    value: &Value,
    input: &mut Input,
    mode: SetMode,
) -> ScimResult<()> {
    let kind: Rt = kind.into();
    if let Some(ext) = kind.extension(key) {
        match value {
            Value::Null => {
                input.body.remove(ext.id);
            }
            Value::Object(inner) => {
                for (k, v) in inner {
                    let qualified = format!("{}:{k}", ext.id);
                    apply_key(kind, &qualified, v, input, mode)?;
                }
            }
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "\"{key}\" must be an object holding the extension's attributes"
                )));
            }
        }
        return Ok(());
    }
    // The core schema's URN as a key, holding core attributes the way an extension's URN
    // holds its own (RFC 7644 §3.10 makes the URN every core attribute's prefix).
    if key.eq_ignore_ascii_case(kind.schema().id) {
        let Value::Object(inner) = value else {
            return Err(ScimError::invalid_value(format!(
                "\"{key}\" must be an object holding {} attributes",
                kind.as_str()
            )));
        };
        for (k, v) in inner {
            let qualified = format!("{}:{k}", kind.schema().id);
            apply_key(kind, &qualified, v, input, mode)?;
        }
        return Ok(());
    }
    let (urn, rest) = split_urn(kind, key);
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let Some(attr) = resolve_as_written(kind, urn, name) else {
        // A null or "" for an unknown name (Entra's top-level `"manager": null`, a
        // template's unset field) drops nothing, so it is not worth a warning.
        if !says_nothing(value) {
            input.ignored.attr(key);
        }
        return Ok(());
    };
    // Attributes the server never stores (read-only echoes, a password) cannot be stored
    // two ways, nor can a sub-attribute the schema does not have (it is ignored below).
    let single = attr.def.is_complex() && !attr.def.multi_valued;
    let named_sub = sub.map(|s| attr.def.sub(s).filter(|_| single).map(|d| d.name));
    if let Some(given) = &mut input.given
        && !matches!(
            attr.def.mutability,
            Mutability::ReadOnly | Mutability::WriteOnly
        )
        && named_sub != Some(None)
    {
        let path = format!("{}:{}", attr.ext.unwrap_or(kind.schema().id), attr.def.name);
        let seen = given.entry(path).or_default();
        let first = match named_sub.flatten() {
            None => seen.whole.as_ref().or(seen.subs.first().map(|s| &s.1)),
            Some(sub) => {
                (seen.whole.as_ref()).or(seen.subs.iter().find(|s| s.0 == sub).map(|s| &s.1))
            }
        };
        if let Some(first) = first {
            // The same spelling twice is a key inside the schema URN's object and the
            // URN-qualified key beside it (JSON's duplicate keys are refused earlier).
            let (first, key) = match key.rsplit_once(':') {
                Some((urn, name)) if first == key => (
                    format!("\"{name}\" inside the \"{urn}\" object"),
                    format!("\"{key}\""),
                ),
                _ => (format!("\"{first}\""), format!("\"{key}\"")),
            };
            return Err(ScimError::invalid_syntax(format!(
                "the body gives \"{}\" twice, as {first} and as {key}: either reading could \
                 store what the client did not mean, so give it once",
                attr.def.name
            )));
        }
        match named_sub.flatten() {
            None => seen.whole = Some(key.to_string()),
            Some(sub) => seen.subs.push((sub, key.to_string())),
        }
    }
    if kind == Kind::Group && attr.def.name == "members" && attr.ext.is_none() {
        if sub.is_some() {
            input.ignored.attr(key);
            return Ok(());
        }
        note_unknown_subs(attr.def, key, value, &mut input.ignored);
        let list = normalize_members(value)?;
        match (mode, &mut input.members) {
            (SetMode::Add, Some(existing)) => existing.extend(list),
            _ => input.members = Some(list),
        }
        return Ok(());
    }
    if matches!(attr.def.mutability, Mutability::ReadOnly) {
        // id, meta, groups: readOnly, and IdPs echo them back (Okta's PUT); ignore quietly.
        return Ok(());
    }
    // A template's unset `"active": ""` says nothing. Read as absent it would mean true, and
    // silently reactivate a suspended user: it leaves the value as it is. So does a null for
    // an attribute whose absence reads as a value (`active`).
    if sub.is_none()
        && attr.def.ty == AttrType::Boolean
        && (value.as_str().is_some_and(|v| v.trim().is_empty())
            || (value.is_null() && attr.def.unset.is_some()))
    {
        let path = match attr.ext {
            Some(urn) => format!("{urn}:{}", attr.def.name),
            None => attr.def.name.to_string(),
        };
        input.keep.push(path);
        return Ok(());
    }
    if attr.def.mutability == Mutability::WriteOnly {
        // password: accepted and never stored, so it can never be returned or leaked.
        return Ok(());
    }
    let sub_def = match sub {
        None => None,
        Some(s) => match attr.def.sub(s) {
            Some(d) if attr.def.is_complex() && !attr.def.multi_valued => Some(d),
            _ => {
                input.ignored.attr(key);
                return Ok(());
            }
        },
    };
    let container = container_mut(&mut input.body, attr);
    match sub_def {
        Some(sd) => {
            let v = normalize_simple(sd, value, &format!("{}.{}", attr.def.name, sd.name))?;
            // Adding nothing to a sub-attribute (`name.givenName: ""`, a template's unset
            // parameter) changes nothing, as for a whole attribute below.
            if v.is_none() && mode == SetMode::Add {
                return Ok(());
            }
            // A manager whose `value` is cleared is no manager (as for the whole attribute
            // below): nothing of it may stay to describe the next one.
            if v.is_none() && sd.name == "value" && is_reference(attr.def) {
                container.remove(attr.def.name);
                drop_empty_extension(&mut input.body, attr);
                return Ok(());
            }
            let entry = container
                .entry(attr.def.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(m) = entry {
                // `manager.value` naming another manager: as for a whole new manager
                // below, what was said about the old one goes with it.
                let other = sd.name == "value"
                    && is_reference(attr.def)
                    && v.as_ref()
                        .is_some_and(|v| m.get("value").is_some_and(|old| old != v));
                if other {
                    m.clear();
                }
                set_or_remove(m, sd.name, v);
                if m.is_empty() {
                    container.remove(attr.def.name);
                }
            }
        }
        None => {
            note_unknown_subs(attr.def, key, value, &mut input.ignored);
            let v = normalize_attr(attr.def, value)?;
            // Sub-attributes a complex value gives as null or "": a replace unassigns them
            // and leaves the others (RFC 7644 §3.5.2.3); an add of nothing changes nothing.
            let cleared: Vec<&str> = match value {
                Value::Object(raw) if attr.def.is_complex() && !attr.def.multi_valued => raw
                    .iter()
                    .filter(|(_, v)| says_nothing(v))
                    .filter_map(|(k, _)| attr.def.sub(k).map(|d| d.name))
                    .collect(),
                _ => Vec::new(),
            };
            let merged = value.is_object() && attr.def.is_complex() && !attr.def.multi_valued;
            match (v, mode) {
                // Adding nothing (null, "", entries with no value) changes nothing.
                (None, SetMode::Add) => {}
                // A manager whose `value` is cleared is no manager: the rest described it.
                (None, SetMode::Replace) if merged && cleared.contains(&"value") => {
                    container.remove(attr.def.name);
                }
                (None, SetMode::Replace) if merged => {
                    if let Some(Value::Object(m)) = container.get_mut(attr.def.name) {
                        for k in &cleared {
                            m.remove(*k);
                        }
                        if m.is_empty() {
                            container.remove(attr.def.name);
                        }
                    }
                }
                (None, _) => {
                    container.remove(attr.def.name);
                }
                (Some(Value::Array(new)), SetMode::Add) if attr.def.multi_valued => {
                    let entry = container
                        .entry(attr.def.name.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        if new
                            .iter()
                            .any(|v| v.get("primary") == Some(&Value::Bool(true)))
                        {
                            demote_primary(list.iter_mut());
                        }
                        add_values(attr.def, list, new);
                        check_count(attr.def, list.len())?;
                        fix_primary(list);
                    }
                }
                (Some(Value::Object(new)), _) if !attr.def.multi_valued => {
                    // Complex single-valued: merge sub-attributes (RFC 7644 §3.5.2.3).
                    let entry = container
                        .entry(attr.def.name.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    // A new `value` names another resource (a new manager): what was said
                    // about the old one (its displayName, its $ref) no longer holds.
                    let other = new
                        .get("value")
                        .is_some_and(|v| entry.get("value").is_some_and(|old| old != v));
                    if !entry.is_object() || other {
                        *entry = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = entry {
                        for (k, v) in new {
                            m.insert(k, v);
                        }
                        if mode == SetMode::Replace {
                            for k in &cleared {
                                m.remove(*k);
                            }
                        }
                    }
                }
                (Some(v), _) => {
                    container.insert(attr.def.name.to_string(), v);
                }
            }
        }
    }
    drop_empty_extension(&mut input.body, attr);
    Ok(())
}

/// `null` or `""`: what IdP templates send for "not set".
fn says_nothing(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn set_or_remove(m: &mut Body, name: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            m.insert(name.to_string(), v);
        }
        None => {
            m.remove(name);
        }
    }
}

/// Note the sub-attributes of a complex value that `def` does not have (a template's
/// `manager.managerId`, say): they are dropped, and the admin mapping them should hear so.
pub fn note_unknown_subs(def: &AttrDef, key: &str, value: &Value, ignored: &mut Ignored) {
    if !def.is_complex() {
        return;
    }
    let items = match value {
        Value::Array(a) => a.as_slice(),
        v => std::slice::from_ref(v),
    };
    // As for an unknown attribute: a null or "" drops nothing and is not worth a warning.
    for (k, _) in items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(Map::iter)
        .filter(|(_, v)| !says_nothing(v))
    {
        if def.sub(k).is_none() {
            ignored.attr(&format!("{key}.{k}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_SCHEMA;
    use serde_json::json;

    #[test]
    fn a_body_of_another_kind_is_refused_and_unknown_urns_ignored() {
        for (kind, urn) in [
            (Kind::User, "urn:ietf:params:scim:schemas:core:2.0:Group"),
            (Kind::Group, "urn:ietf:params:scim:schemas:core:2.0:User"),
            (Kind::User, "urn:ietf:params:scim:api:messages:2.0:PatchOp"),
        ] {
            let raw = json!({"schemas": [urn], "userName": "u", "displayName": "g"});
            let e = normalize(kind, &raw).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::InvalidSyntax)
            );
            assert!(e.detail.contains(urn), "{}", e.detail);
        }
        let raw = json!({"schemas": ["urn:onelogin:template"], "userName": "u"});
        assert_eq!(
            normalize(Kind::User, &raw).unwrap().ignored.schemas,
            vec!["urn:onelogin:template".to_string()]
        );
    }

    /// A body's id as a PUT compares it: blank is absent, spaces around it go, and a
    /// number is no id (it differs from the resource's).
    #[test]
    fn an_id_is_read_as_a_put_compares_it() {
        let id = |v: Value| {
            normalize(Kind::User, &json!({"userName": "u", "id": v}))
                .unwrap()
                .id
        };
        assert_eq!(id(json!(null)), None);
        assert_eq!(id(json!("   ")), None);
        assert_eq!(id(json!(" abc ")), Some("abc".into()));
        assert_eq!(id(json!(5)), Some("5".into()));
    }

    #[test]
    fn normalises_idp_sloppiness() {
        let raw = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:scim:schemas:core:2.0"],
            "UserName": "a@b.c", "id": null, "title": null, "ACTIVE": "True",
            "emails": {"Value": "a@b.c", "Primary": true, "type": "work"},
            "meta": {"created": "04-12-2018 00:00:00"}, "groups": [], "password": "x",
            "adreses": [1], "name": {"givenName": "A", "middleName2": "B", "suffix2": ""},
            (ENTERPRISE_SCHEMA): {"Department": "Ops", "manager": "m-1"},
            // Entra's top-level nulls and a template's blank say nothing: no warning.
            "manager": null, "costCenter": "",
        });
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(
            Value::Object(got.body),
            json!({
                "userName": "a@b.c", "active": true, "name": {"givenName": "A"},
                "emails": [{"value": "a@b.c", "primary": true, "type": "work"}],
                (ENTERPRISE_SCHEMA): {"department": "Ops", "manager": {"value": "m-1"}},
            })
        );
        assert_eq!(got.ignored.attributes, ["adreses", "name.middleName2"]);
        assert_eq!(
            got.ignored.schemas,
            vec!["urn:scim:schemas:core:2.0".to_string()]
        );
        // Inside an extension, and in each entry of a multi-valued attribute.
        let raw = json!({"userName": "a@b.c",
            "emails": [{"value": "a@b.c", "label": "x"}, {"value": "b@b.c", "label": "y"}],
            (ENTERPRISE_SCHEMA): {"manager": {"managerId": "m-1"}}});
        let got = normalize(Kind::User, &raw).unwrap();
        assert!(got.body.get(ENTERPRISE_SCHEMA).is_none(), "{:?}", got.body);
        assert_eq!(
            got.ignored.attributes,
            [
                "emails.label".to_string(),
                format!("{ENTERPRISE_SCHEMA}:manager.managerId")
            ]
        );
    }

    #[test]
    fn ignored_names_leave_values_out_and_stay_few() {
        let mut ig = Ignored::default();
        ig.attr(r#"emails[value eq "private@x.example"].displayy"#);
        ig.attr(r#"x[a eq "[b]"]"#);
        ig.attr(r#"y[value eq "]secret@corp.example"].z"#);
        ig.attr(r#"w[value eq "a\"]b@corp.example"]"#);
        ig.attr(r#"v[value eq "c@corp.example""#);
        ig.attr(&"n".repeat(500));
        for i in 0..1000 {
            ig.attr(&format!("k{i}"));
            ig.schema(&format!("urn:x:{i}"));
        }
        assert_eq!(ig.attributes[0], "emails[…].displayy");
        assert_eq!(ig.attributes[1], "x[…]");
        assert_eq!(&ig.attributes[2..5], ["y[…].z", "w[…]", "v[…]"]);
        assert!(
            ig.attributes.iter().all(|a| !a.contains("corp")),
            "{:?}",
            ig.attributes
        );
        assert_eq!(
            ig.attributes[5],
            format!("{}…", "n".repeat(IGNORED_NAME_MAX))
        );
        assert_eq!(
            (ig.attributes.len(), ig.schemas.len()),
            (IGNORED_MAX, IGNORED_MAX)
        );
    }

    #[test]
    fn an_attribute_named_twice_in_a_body_is_refused() {
        let core = USER_SCHEMA;
        for raw in [
            json!({"userName": "a", (format!("{core}:userName")): "b"}),
            json!({"userName": "a", (core): {"userName": "b"}}),
            json!({"userName": "a", "name": {"givenName": "B"}, "name.givenName": "A"}),
            json!({"userName": "a", "name.givenName": "A", "name": {"familyName": "F"}}),
            json!({"userName": "a", (format!("{ENTERPRISE_SCHEMA}:employeeNumber")): "7",
                (ENTERPRISE_SCHEMA): {"employeeNumber": "8"}}),
        ] {
            let e = normalize(Kind::User, &raw).unwrap_err();
            assert_eq!(
                e.scim_type.map(|t| t.as_str()),
                Some("invalidSyntax"),
                "{raw}"
            );
            assert!(e.detail.contains("twice"), "{}", e.detail);
        }
        // One spelling, once inside the extension's object and once qualified beside it:
        // the detail tells the two apart, in either order.
        for raw in [
            json!({(ENTERPRISE_SCHEMA): {"department": "a"},
                (format!("{ENTERPRISE_SCHEMA}:department")): "b", "userName": "a"}),
            json!({(format!("{ENTERPRISE_SCHEMA}:department")): "b",
                (ENTERPRISE_SCHEMA): {"department": "a"}, "userName": "a"}),
        ] {
            let e = normalize(Kind::User, &raw).unwrap_err();
            assert_eq!(
                e.detail,
                format!(
                    "the body gives \"department\" twice, as \"department\" inside the \
                     \"{ENTERPRISE_SCHEMA}\" object and as \"{ENTERPRISE_SCHEMA}:department\": \
                     either reading could store what the client did not mean, so give it once"
                )
            );
        }
        // Different sub-attributes, readOnly echoes, a password (never stored) and dotted
        // keys that are ignored (unknown sub-attributes, those of a multi-valued attribute)
        // are not one attribute twice.
        let raw = json!({"userName": "a", "name.givenName": "G", "name.familyName": "F",
            "id": "x", "meta": {}, "groups": [], (format!("{core}:groups")): [],
            "password": "p", (format!("{core}:password")): "p", "name.x1": 1, "name.x2": 2,
            "emails": [{"value": "a@x"}], "emails.value": "b@x"});
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(
            got.body["name"],
            json!({"givenName": "G", "familyName": "F"})
        );
    }

    #[test]
    fn dotted_and_urn_keys_are_paths() {
        let raw = json!({"userName": "u", "name.givenName": "G",
            (format!("{ENTERPRISE_SCHEMA}:employeeNumber")): "42"});
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(got.body["name"], json!({"givenName": "G"}));
        assert_eq!(got.body[ENTERPRISE_SCHEMA], json!({"employeeNumber": "42"}));
    }
}
