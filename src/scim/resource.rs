//! Turning what a client sends into the canonical stored form, and checking it against the
//! schema. IdPs are sloppy in known ways (idp-notes §8): attribute names in any case, `null`
//! for absent, booleans as strings, a single object where an array belongs, the manager as a
//! bare string, unknown attributes and schema URNs. Those are normalised here, once, for POST,
//! PUT and PATCH alike. What would lose data (a wrong type, a missing required attribute) is a
//! 400 `invalidValue`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::schema::{
    AttrDef, AttrRef, AttrType, GROUP_SCHEMA, Kind, Mutability, Rt, USER_SCHEMA, resolve, split_urn,
};

/// Canonical resource body: core attributes at the top level, extension attributes in an
/// object under their URN. Never holds `id`, `meta`, `schemas`, `groups`, `password`, or
/// (for groups) `members`: those are kept apart by the store.
pub type Body = Map<String, Value>;

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
    let mut input = Input::default();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            check_schemas(kind, value, &mut input.ignored)?;
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            input.id = value.as_str().map(str::to_string);
            continue;
        }
        apply_key(kind, key, value, &mut input, SetMode::Replace)?;
    }
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
    let (urn, rest) = split_urn(kind, key);
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let Some(attr) = resolve(kind, urn, name) else {
        input.ignored.attr(key);
        return Ok(());
    };
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
            if let Some(Value::Array(items)) = &v {
                one_per_type(attr.def, items)?;
            }
            match (v, mode) {
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
                        add_values(list, new);
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

/// Normalise the value of a whole attribute. `None` means "absent" (null, empty string,
/// empty list or object).
pub fn normalize_attr(def: &'static AttrDef, value: &Value) -> ScimResult<Option<Value>> {
    if def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Null => return Ok(None),
            Value::Array(a) => a.iter().collect(),
            // A single object where a list belongs (OneLogin's emails): read it as a list of one.
            other => vec![other],
        };
        check_count(def, items.len())?;
        let mut out = Vec::with_capacity(items.len());
        // Entries equal but for `primary`, by a key that ignores it: finding them by
        // comparing each with all before it took seconds for a body of 60,000 emails.
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(def, item)? {
                // A template's unset parameter leaves `{"value":"","type":"work"}`: an entry
                // that only describes a value it does not have is no entry at all.
                if !def.is_complex() || carries_data(&v) {
                    push_once(&mut out, &mut seen, v);
                }
            }
        }
        fix_primary(&mut out);
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    normalize_single(def, value)
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
    for k in items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(Map::keys)
    {
        if def.sub(k).is_none() {
            ignored.attr(&format!("{key}.{k}"));
        }
    }
}

/// Normalise one value of `def` (one element when multi-valued).
pub fn normalize_single(def: &'static AttrDef, value: &Value) -> ScimResult<Option<Value>> {
    if !def.is_complex() {
        return normalize_simple(def, value, def.name);
    }
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        // The manager as a bare id string (Entra). An entry of a multi-valued attribute must
        // be an object: no IdP sends `"emails": "a@b"`, and reading it is guessing.
        Value::String(s) if def.sub("value").is_some() && !def.multi_valued => {
            return Ok(if s.trim().is_empty() {
                None
            } else {
                Some(Value::Object(Map::from_iter([(
                    "value".to_string(),
                    Value::String(s.clone()),
                )])))
            });
        }
        other => {
            return Err(ScimError::invalid_value(format!(
                "attribute \"{}\" must be a complex object, got {}",
                def.name,
                type_name(other)
            )));
        }
    };
    let mut out = Map::new();
    let mut value_given = false;
    for (k, v) in obj {
        let Some(sd) = def.sub(k) else { continue };
        value_given |= sd.name == "value";
        if let Some(nv) = normalize_simple(sd, v, &format!("{}.{}", def.name, sd.name))? {
            out.insert(sd.name.to_string(), nv);
        }
    }
    // A manager whose `value` is empty means "none" (OneLogin templates send
    // `{"value":"","displayName":" "}` for an unset manager). One sent without `value` at
    // all may be a PATCH changing only other sub-attributes: `drop_dangling_references`
    // judges it once the whole body is known.
    if value_given && is_reference(def) && !out.contains_key("value") {
        return Ok(None);
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Object(out))
    })
}

/// Normalise a simple (non-complex) value, naming `label` in errors.
pub fn normalize_simple(def: &AttrDef, value: &Value, label: &str) -> ScimResult<Option<Value>> {
    let bad = |what: &str| {
        ScimError::invalid_value(format!(
            "attribute \"{label}\" must be {what}, got {}",
            type_name(value)
        ))
    };
    match (def.ty, value) {
        (_, Value::Null) => Ok(None),
        (AttrType::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(*b))),
        // An unset template parameter (`"primary": ""`).
        (AttrType::Boolean, Value::String(s)) if s.trim().is_empty() => Ok(None),
        // Exactly `true` or `false` in any case (Entra, OneLogin). Anything else, padded
        // ones included, is refused rather than guessed at.
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Some(Value::Bool(true)))
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Some(Value::Bool(false)))
        }
        (AttrType::Boolean, Value::String(s)) => Err(ScimError::invalid_value(format!(
            "attribute \"{label}\" must be a boolean (true or false), got the string {s:?}"
        ))),
        (AttrType::Boolean, _) => Err(bad("a boolean")),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(value.clone()))
        }
        (AttrType::Integer, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|i| Some(Value::from(i)))
            .map_err(|_| bad("an integer")),
        (AttrType::Integer, _) => Err(bad("an integer")),
        (AttrType::Decimal, Value::Number(_)) => Ok(Some(value.clone())),
        (AttrType::Decimal, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| Some(Value::Number(n)))
            .ok_or_else(|| bad("a decimal number")),
        (AttrType::Decimal, _) => Err(bad("a decimal number")),
        (AttrType::DateTime, Value::String(s)) => {
            if s.is_empty() {
                return Ok(None);
            }
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|_| Some(value.clone()))
                .map_err(|_| {
                    ScimError::invalid_value(format!(
                        "attribute \"{label}\" must be an RFC 3339 date-time such as \
                         2024-05-01T12:00:00Z, got \"{s}\""
                    ))
                })
        }
        (AttrType::DateTime, _) => Err(bad("an RFC 3339 date-time string")),
        (AttrType::Binary, Value::String(s)) if !is_base64(s) => {
            Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must be base64 (RFC 7643 §2.3.6), as DER certificates are"
            )))
        }
        // NUL is valid JSON but no name or address holds one, and the applications reading
        // the directory (C strings, PostgreSQL text) cannot store it.
        (AttrType::String | AttrType::Reference, Value::String(s)) if s.contains('\0') => {
            Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must not contain a NUL character (\\u0000)"
            )))
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(s)) => {
            // An empty string from an IdP template means "not set".
            Ok(if s.is_empty() {
                None
            } else {
                Some(value.clone())
            })
        }
        // A number or boolean where a string belongs is refused rather than turned into
        // text: RFC 7643 §2.3.1 types it as a string, and no IdP sends one (idp-notes).
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::Number(n)) => {
            Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must be a string, got the number {n} (send \"{n}\")"
            )))
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, _) => Err(bad("a string")),
        (AttrType::Complex, _) => Err(bad("a complex object")),
    }
}

/// Base64 in the standard or URL-safe alphabet, padded or not (RFC 4648 §4, §5). Line breaks
/// and spaces are refused: a certificate pasted as PEM with its header is not a value.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// A multi-valued entry's `type`, folded for comparing.
fn entry_type(entry: &Value) -> Option<String> {
    entry.get("type")?.as_str().map(str::to_lowercase)
}

/// A type appears at most once among the values a client sends for an attribute (Entra's
/// rule, idp-notes §3.3): two work emails contradict each other, and `emails[type eq
/// "work"]` must name one entry.
fn one_per_type(def: &AttrDef, items: &[Value]) -> ScimResult<()> {
    match repeated_types(items).first() {
        Some(t) => Err(ScimError::invalid_value(format!(
            "\"{}\" holds two entries of type \"{t}\"; each type may appear once",
            def.name
        ))),
        None => Ok(()),
    }
}

/// The types that more than one entry of `items` has.
pub fn repeated_types(items: &[Value]) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut twice = Vec::new();
    for t in items.iter().filter_map(entry_type) {
        if seen.contains(&t) {
            if !twice.contains(&t) {
                twice.push(t);
            }
        } else {
            seen.insert(t);
        }
    }
    twice
}

/// Whether a multi-valued entry holds anything besides the words about it (`type`,
/// `primary`, `display`).
fn carries_data(entry: &Value) -> bool {
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
fn push_once(list: &mut Vec<Value>, seen: &mut HashMap<String, usize>, item: Value) -> bool {
    match seen.entry(sameness_key(&item)) {
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

/// What two entries equal but for `primary` share: their other members, in name order. Such
/// entries are kept once (Entra's `Replace emails[type eq "work"].value` on two work entries
/// would otherwise leave two identical ones).
fn sameness_key(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut parts: Vec<(&String, &Value)> =
                m.iter().filter(|(k, _)| k.as_str() != "primary").collect();
            parts.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::to_string(&parts).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// A PATCH `add` of `new` (distinct, one per type) to `list`. An entry of a type already
/// there updates that entry: adding a second work email would make `emails[type eq "work"]`
/// ambiguous. Others are appended unless equal but for `primary` to one there. Both are
/// found by key, so a thousand values added to a thousand cost no million comparisons.
fn add_values(list: &mut Vec<Value>, new: Vec<Value>) {
    let mut by_type: HashMap<String, usize> = HashMap::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, e) in list.iter().enumerate() {
        if let Some(t) = entry_type(e) {
            by_type.entry(t).or_insert(i);
        }
        by_key.entry(sameness_key(e)).or_insert(i);
    }
    for item in new {
        let same_type = entry_type(&item).and_then(|t| by_type.get(&t).copied());
        match (same_type.and_then(|i| list.get_mut(i)), item) {
            (Some(Value::Object(old)), Value::Object(m)) => old.extend(m),
            (_, item) => {
                let t = entry_type(&item);
                if push_once(list, &mut by_key, item)
                    && let Some(t) = t
                {
                    by_type.insert(t, list.len() - 1);
                }
            }
        }
    }
}

/// A value made primary takes over (RFC 7644 §3.5.2): the others it is added to or set
/// among stop being primary, rather than `fix_primary` keeping the first.
pub fn demote_primary<'a>(others: impl Iterator<Item = &'a mut Value>) {
    for p in others.filter_map(|e| e.get_mut("primary")) {
        *p = Value::Bool(false);
    }
}

/// At most one entry may carry `primary: true` (RFC 7643 §2.4): keep the first.
fn fix_primary(list: &mut [Value]) {
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

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Group members as given: a list of `{"value": id, "type"?: "User"|"Group"}` (a bare id
/// string is read as `{"value": id}`).
pub fn normalize_members(value: &Value) -> ScimResult<Vec<Value>> {
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (id, ty) = match item {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => {
                let field = |n: &str| {
                    o.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v)
                };
                let Some(Value::String(id)) = field("value") else {
                    return Err(ScimError::invalid_value(
                        "each group member needs a \"value\" holding the member's id",
                    ));
                };
                let ty = match field("type") {
                    Some(Value::String(t)) if t.eq_ignore_ascii_case("user") => Some("User"),
                    Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => Some("Group"),
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) if t.is_empty() => None,
                    Some(other) => {
                        return Err(ScimError::invalid_value(format!(
                            "member type must be \"User\" or \"Group\", got {other}"
                        )));
                    }
                };
                (id.as_str(), ty)
            }
            other => {
                return Err(ScimError::invalid_value(format!(
                    "a group member must be an object with a \"value\", got {}",
                    type_name(other)
                )));
            }
        };
        let mut m = Map::new();
        m.insert("value".into(), Value::String(id.to_string()));
        if let Some(t) = ty {
            m.insert("type".into(), Value::String(t.into()));
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

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

/// The `value` of each of a user's emails.
pub fn email_values(body: &Body) -> impl Iterator<Item = &str> {
    body.get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("value").and_then(Value::as_str))
}

/// A single complex attribute with a `value` (the manager) refers to another resource.
fn is_reference(def: &AttrDef) -> bool {
    def.is_complex() && !def.multi_valued && def.sub("value").is_some()
}

/// A reference left without its `value` (a manager with only a displayName) points nowhere,
/// so it is no reference: removed after every write, whichever part of it came last.
pub fn drop_dangling_references(kind: impl Into<Rt>, body: &mut Body) {
    let kind: Rt = kind.into();
    fn drop_in(defs: &[AttrDef], m: &mut Body) {
        for def in defs.iter().filter(|d| is_reference(d)) {
            if m.get(def.name).is_some_and(|v| v.get("value").is_none()) {
                m.remove(def.name);
            }
        }
    }
    drop_in(kind.schema().attributes, body);
    for ext in kind.extensions() {
        if let Some(Value::Object(inner)) = body.get_mut(ext.id) {
            drop_in(ext.attributes, inner);
            if inner.is_empty() {
                body.remove(ext.id);
            }
        }
    }
}

/// The core schema's required attributes must be present after every write.
pub fn check_required(kind: impl Into<Rt>, body: &Body) -> ScimResult<()> {
    let kind: Rt = kind.into();
    for def in kind.schema().attributes.iter().filter(|d| d.required) {
        match body.get(def.name) {
            None => {
                return Err(ScimError::invalid_value(format!(
                    "missing required attribute \"{}\" for a {}",
                    def.name,
                    kind.as_str()
                )));
            }
            // Only spaces would be a userName or group name nobody can tell apart or type.
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(ScimError::invalid_value(format!(
                    "attribute \"{}\" must not be blank",
                    def.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The same value, where a multi-valued attribute's values may come in another order: they
/// have none (RFC 7643 §2.4), and an IdP's PUT need not keep the stored one.
fn same_values(now: &Value, was: &Value) -> bool {
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

/// Immutable attributes (RFC 7643 §2.2) may be set once and never changed: a write that
/// gives another value, or (`put` false: a PATCH) removes one, is 400 `mutability`. A PUT
/// that leaves one out keeps it, as it keeps `active`: a template need not repeat it.
pub fn check_immutable(
    kind: impl Into<Rt>,
    old: &Body,
    new: &mut Body,
    put: bool,
) -> ScimResult<()> {
    let kind: Rt = kind.into();
    let core = kind.schema().attributes.iter().map(|d| (None, d));
    let ext = kind
        .extensions()
        .iter()
        .flat_map(|e| e.attributes.iter().map(move |d| (Some(e.id), d)));
    for (urn, def) in core.chain(ext) {
        let mut subs: Vec<Option<&str>> = Vec::new();
        if def.mutability == Mutability::Immutable {
            subs.push(None);
        }
        if def.is_complex() && !def.multi_valued {
            subs.extend(
                def.sub_attributes
                    .iter()
                    .filter(|s| s.mutability == Mutability::Immutable)
                    .map(|s| Some(s.name)),
            );
        }
        for sub in subs {
            let get = |b: &Body| -> Option<Value> {
                let holder = match urn {
                    None => b,
                    Some(u) => b.get(u)?.as_object()?,
                };
                let v = holder.get(def.name)?;
                match sub {
                    Some(s) => v.get(s).cloned(),
                    None => Some(v.clone()),
                }
            };
            let Some(was) = get(old) else { continue };
            let name = || {
                let top = match urn {
                    Some(u) => format!("{u}:{}", def.name),
                    None => def.name.to_string(),
                };
                match sub {
                    Some(s) => format!("{top}.{s}"),
                    None => top,
                }
            };
            match get(new) {
                Some(now) if same_values(&now, &was) => {}
                Some(_) => {
                    return Err(ScimError::mutability(format!(
                        "\"{}\" is immutable: it is set, and cannot change",
                        name()
                    )));
                }
                None if !put => {
                    return Err(ScimError::mutability(format!(
                        "\"{}\" is immutable: it is set, and cannot be removed",
                        name()
                    )));
                }
                None => {
                    let c = container_mut(new, AttrRef { ext: urn, def });
                    match sub {
                        None => {
                            c.insert(def.name.to_string(), was);
                        }
                        Some(s) => {
                            let entry = c
                                .entry(def.name.to_string())
                                .or_insert_with(|| Value::Object(Map::new()));
                            if let Value::Object(m) = entry {
                                m.insert(s.to_string(), was);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// An extension's required attributes must be present after a write, unless the resource
/// (`before`, for a PUT or PATCH) was stored without one: a tenant may make an attribute
/// required long after its users were provisioned, and the IdP must still be able to
/// deactivate and anonymise them. A write may not take a required value away.
pub fn check_required_extensions(
    kind: impl Into<Rt>,
    body: &Body,
    before: Option<&Body>,
) -> ScimResult<()> {
    let kind: Rt = kind.into();
    let has = |b: &Body, urn: &str, name: &str| {
        b.get(urn)
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key(name))
    };
    for ext in kind.extensions() {
        for def in ext.attributes.iter().filter(|d| d.required) {
            if !has(body, ext.id, def.name) && before.is_none_or(|b| has(b, ext.id, def.name)) {
                return Err(ScimError::invalid_value(format!(
                    "missing required attribute \"{}:{}\"",
                    ext.id, def.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
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

    #[test]
    fn binary_values_must_be_base64() {
        let cert = |v: &str| {
            normalize(
                Kind::User,
                &json!({"userName": "u", "x509Certificates": [{"value": v}]}),
            )
        };
        for good in ["MIIB+w==", "MIIB-w", "AAAA", ""] {
            assert!(cert(good).is_ok(), "{good}");
        }
        for bad in [
            "!!!notbase64",
            "-----BEGIN CERTIFICATE-----",
            "AAAAA",
            "AA===",
        ] {
            let e = cert(bad).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::InvalidValue),
                "{bad}"
            );
        }
    }

    #[test]
    fn normalises_idp_sloppiness() {
        let raw = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:scim:schemas:core:2.0"],
            "UserName": "a@b.c", "id": null, "title": null, "ACTIVE": "True",
            "emails": {"Value": "a@b.c", "Primary": true, "type": "work"},
            "meta": {"created": "04-12-2018 00:00:00"}, "groups": [], "password": "x",
            "adreses": [1], "name": {"givenName": "A", "middleName2": "B"},
            (ENTERPRISE_SCHEMA): {"Department": "Ops", "manager": "m-1"},
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
            (Kind::User, json!({"userName": "\t"})),
            (Kind::Group, json!({"displayName": " \u{a0} "})),
        ] {
            let e = normalize(kind, &body).unwrap_err();
            assert!(e.detail.contains("must not be blank"), "{}", e.detail);
        }
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
    fn a_padded_boolean_string_is_refused() {
        for bad in [" true", "True ", "yes", "1"] {
            let err = normalize(Kind::User, &json!({"userName": "a", "active": bad})).unwrap_err();
            assert_eq!(err.status, 400, "{bad:?}");
            assert_eq!(err.scim_type, Some(ScimType::InvalidValue), "{bad:?}");
            let err = normalize(
                Kind::User,
                &json!({"userName": "a", "emails": [{"value": "a@x", "primary": bad}]}),
            )
            .unwrap_err();
            assert!(err.detail.contains("emails.primary"), "{}", err.detail);
        }
        let got = normalize(Kind::User, &json!({"userName": "a", "active": "FALSE"})).unwrap();
        assert_eq!(got.body["active"], json!(false));
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
    fn a_type_appears_once() {
        let two = json!({"userName": "a", "emails": [
            {"value": "a@x", "type": "work"}, {"value": "b@x", "type": "Work"}]});
        let e = normalize(Kind::User, &two).unwrap_err();
        assert!(e.detail.contains("type \"work\""), "{}", e.detail);
        // Untyped entries, and one of each type, are fine.
        let ok = json!({"userName": "a", "emails": [{"value": "a@x"}, {"value": "b@x"},
            {"value": "c@x", "type": "work"}, {"value": "d@x", "type": "home"}]});
        assert_eq!(
            normalize(Kind::User, &ok).unwrap().body["emails"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        // Adding a work email to a user with one updates it instead of adding a second.
        let mut input = normalize(
            Kind::User,
            &json!({"userName": "a", "emails": [{"value": "a@x", "type": "work", "primary": true}]}),
        )
        .unwrap();
        let add = json!([{"value": "new@x", "type": "WORK"}, {"value": "h@x", "type": "home"}]);
        apply_key(Kind::User, "emails", &add, &mut input, SetMode::Add).unwrap();
        assert_eq!(
            input.body["emails"],
            json!([{"value": "new@x", "type": "WORK", "primary": true}, {"value": "h@x", "type": "home"}])
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

    #[test]
    fn dotted_and_urn_keys_are_paths() {
        let raw = json!({"userName": "u", "name.givenName": "G",
            (format!("{ENTERPRISE_SCHEMA}:employeeNumber")): "42"});
        let got = normalize(Kind::User, &raw).unwrap();
        assert_eq!(got.body["name"], json!({"givenName": "G"}));
        assert_eq!(got.body[ENTERPRISE_SCHEMA], json!({"employeeNumber": "42"}));
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

    #[test]
    fn group_members_are_kept_apart() {
        let raw = json!({"displayName": "G", "members": [{"value": "1", "type": "user"}, "2"]});
        let got = normalize(Kind::Group, &raw).unwrap();
        assert!(!got.body.contains_key("members"));
        assert_eq!(
            got.members.unwrap(),
            vec![json!({"value": "1", "type": "User"}), json!({"value": "2"})]
        );
    }
}
