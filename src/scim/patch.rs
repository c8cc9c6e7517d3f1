//! The PATCH engine (RFC 7644 §3.5.2) with the IdP dialects of idp-notes §1: operation names
//! in any case, no-path values with dotted and URN keys, value-filter paths that create the
//! entry they name, member removal by value list. Operations apply in order to a copy; any
//! error discards the copy, so a request is all or nothing.
//!
//! Group membership is not materialised here: a group may have a million members, so member
//! changes come out as `MemberOp`s for the store to apply key by key.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::filter::{self, CompValue, CompareOp, Filter};
use super::fold::fold;
use super::path::{self, Parsed, Path};
use super::resource::{
    self, Body, Ignored, Input, SetMode, container, container_mut, drop_empty_extension,
};
use super::schema::{AttrDef, AttrRef, Kind, Mutability, PATCH_OP, Rt, split_urn};

pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Add these members (`{"value", "type"?}`); adding a present member is a no-op.
    Add(Vec<Value>),
    /// Remove these ids; removing an absent one is a no-op.
    Remove(Vec<String>),
    /// Remove the members matching an element filter on `members`.
    RemoveWhere(Filter),
    Clear,
}

/// What the operations leave to do once all have run.
#[derive(Default)]
struct Pending {
    member_ops: Vec<MemberOp>,
    /// Attributes changed through a value filter, which may hold an entry with no value yet
    /// (`emails[type eq "work"].primary` on a user without a work email): a later operation
    /// may give it one (`emails[type eq "work"].value`), so it is dropped only at the end.
    hollow: Vec<AttrRef>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub body: Body,
    pub member_ops: Vec<MemberOp>,
    pub ignored: Ignored,
}

/// Parse a PatchOp request body.
pub fn parse_request(raw: &Value) -> ScimResult<Vec<Operation>> {
    parse_request_with(raw, MAX_OPERATIONS)
}

/// As `parse_request`, allowing at most `max_ops` operations (`server.max_patch_operations`).
pub fn parse_request_with(raw: &Value, max_ops: usize) -> ScimResult<Vec<Operation>> {
    let Value::Object(obj) = raw else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body must be a JSON object with \"schemas\" and \"Operations\"",
        ));
    };
    let field = |n: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)
    };
    if let Some(schemas) = field("schemas") {
        let is_op = |s: &Value| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP));
        // The URN alone, not in a list, is taken as a POST's or PUT's `schemas` is.
        let ok = is_op(schemas) || schemas.as_array().is_some_and(|a| a.iter().any(is_op));
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "a PATCH body's \"schemas\" must contain \"{PATCH_OP}\""
            )));
        }
    }
    let ops = match field("Operations") {
        Some(Value::Array(a)) => a,
        Some(Value::Object(_)) => std::slice::from_ref(field("Operations").unwrap_or(&Value::Null)),
        _ => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body needs an \"Operations\" array",
            ));
        }
    };
    if ops.len() > max_ops {
        return Err(ScimError::new(
            400,
            Some(super::error::ScimType::TooMany),
            format!(
                "a PATCH may hold at most {max_ops} operations, got {}",
                ops.len()
            ),
        ));
    }
    ops.iter()
        .enumerate()
        .map(|(i, o)| parse_op(i, o))
        .collect()
}

fn parse_op(i: usize, raw: &Value) -> ScimResult<Operation> {
    let Value::Object(o) = raw else {
        return Err(ScimError::invalid_syntax(format!(
            "operation {i} must be an object"
        )));
    };
    let field = |n: &str| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)
    };
    let op = match field("op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => OpKind::Add,
        Some("replace") => OpKind::Replace,
        Some("remove") => OpKind::Remove,
        Some(other) => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {i}: unknown op \"{other}\" (expected add, replace or remove)"
            )));
        }
        None => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {i} needs an \"op\" of add, replace or remove"
            )));
        }
    };
    let path = match field("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "operation {i}: \"path\" must be a string"
            )));
        }
    };
    // A null value is kept when a path says what it clears (see `apply_one`); without one it
    // is no value.
    let value = field("value")
        .filter(|v| !v.is_null() || path.is_some())
        .cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "operation {i} ({}) needs a \"value\"",
            if op == OpKind::Add { "add" } else { "replace" }
        )));
    }
    Ok(Operation { op, path, value })
}

/// Apply `ops` to a copy of `body` (the resource `id`, of `kind`).
pub fn apply(kind: impl Into<Rt>, id: &str, body: &Body, ops: &[Operation]) -> ScimResult<Outcome> {
    let kind: Rt = kind.into();
    let mut input = Input {
        body: body.clone(),
        ..Input::default()
    };
    let mut pending = Pending::default();
    for (i, op) in ops.iter().enumerate() {
        apply_one(kind, id, op, &mut input, &mut pending).map_err(|e| ScimError {
            detail: format!("operation {i}: {}", e.detail),
            ..e
        })?;
    }
    drop_hollow(&pending.hollow, body, &mut input.body)?;
    // RFC 7644 §3.5.2.2: removing a required attribute is a mutability error, whichever
    // operation left it unassigned (a remove, a null or an empty string).
    let has = resource::holds;
    let required = (kind.schema().attributes.iter().map(|d| (None, d))).chain(
        (kind.extensions().iter()).flat_map(|e| e.attributes.iter().map(|d| (Some(e.id), d))),
    );
    for (urn, def) in required.filter(|(_, d)| d.required) {
        if has(body, urn, def.name) && !has(&input.body, urn, def.name) {
            let name = urn.map_or(def.name.to_string(), |u| format!("{u}:{}", def.name));
            return Err(ScimError::mutability(format!(
                "\"{name}\" is required: a PATCH may change it but not remove it"
            )));
        }
    }
    resource::drop_dangling_references(kind, &mut input.body);
    resource::check_immutable(kind, body, &mut input.body, false)?;
    resource::check_required(kind, &input.body)?;
    resource::check_required_extensions(kind, &input.body, Some(body))?;
    Ok(Outcome {
        body: input.body,
        member_ops: pending.member_ops,
        ignored: input.ignored,
    })
}

fn mode(op: OpKind) -> SetMode {
    if op == OpKind::Add {
        SetMode::Add
    } else {
        SetMode::Replace
    }
}

fn read_only(raw_path: &str) -> ScimError {
    ScimError::mutability(format!(
        "\"{}\" is read-only: the server sets it",
        raw_path.trim()
    ))
}

fn apply_one(
    kind: Rt,
    id: &str,
    op: &Operation,
    input: &mut Input,
    pending: &mut Pending,
) -> ScimResult<()> {
    let Some(raw_path) = &op.path else {
        return apply_no_path(kind, id, op, input, pending);
    };
    // Null means absent (idp-notes §8): `replace` with null removes the path, `add` of
    // nothing changes nothing. A null for an attribute whose absence reads as a value
    // (`active`) says nothing either, as in a PUT: it never reactivates a user.
    if op.value.as_ref().is_some_and(Value::is_null) {
        let known = match path::parse(kind, raw_path) {
            Ok(Parsed::Known(p)) => Some(p),
            _ => None,
        };
        let whole = known
            .as_ref()
            .filter(|p| p.filter.is_none() && p.sub.is_none());
        let defaulted = whole.is_some_and(|p| p.attr.def.unset.is_some());
        // The id, as absent as in a PUT: nothing to change.
        let names_id = known
            .as_ref()
            .is_some_and(|p| p.attr.ext.is_none() && p.attr.def.name == "id");
        // A `remove` of a whole multi-valued attribute with a null value list is refused:
        // read as absent it would empty a group a template meant to leave alone, and read
        // as "no one" it would tell a client that meant everyone that it was done. (A
        // read-only one is refused as such, below.)
        let listed = whole.is_some_and(|p| {
            p.attr.def.multi_valued && p.attr.def.mutability != Mutability::ReadOnly
        });
        return match op.op {
            // Adding nothing changes nothing, but the path must still be one that could be
            // written: a malformed one, or `meta`, is refused as with any other value.
            OpKind::Add if kind.extension(raw_path.trim()).is_some() => Ok(()),
            OpKind::Add => match path::parse(kind, raw_path)? {
                Parsed::Known(p) if p.attr.def.mutability == Mutability::ReadOnly && !names_id => {
                    Err(read_only(raw_path))
                }
                _ => Ok(()),
            },
            OpKind::Replace if defaulted || names_id => Ok(()),
            OpKind::Remove if listed => Err(ScimError::invalid_value(format!(
                "a remove of \"{raw_path}\" with \"value\": null names nothing to remove: \
                 list the values to remove, or leave \"value\" out to remove them all"
            ))),
            _ => {
                let clear = Operation {
                    op: OpKind::Remove,
                    path: op.path.clone(),
                    value: None,
                };
                apply_one(kind, id, &clear, input, pending)
            }
        };
    }
    // A whole extension named by its URN: removed at once, or set from an object of its
    // attributes (the RFC's path grammar wants an attribute, but clients send this).
    if let Some(ext) = kind.extension(raw_path.trim()) {
        return match (op.op, &op.value) {
            (OpKind::Remove, _) => {
                input.body.remove(ext.id);
                Ok(())
            }
            (_, Some(v)) => resource::apply_key(kind, ext.id, v, input, mode(op.op)),
            (_, None) => Ok(()),
        };
    }
    let p = match path::parse(kind, raw_path)? {
        Parsed::Unknown(u) => {
            input.ignored.attr(&u);
            return Ok(());
        }
        Parsed::Known(p) => p,
    };
    if p.attr.ext.is_none() && p.attr.def.name == "id" {
        if op.op == OpKind::Remove {
            return Err(ScimError::mutability(
                "\"id\" is assigned by the server and cannot be removed",
            ));
        }
        return check_id(id, op.value.as_ref());
    }
    if kind == Kind::Group && p.attr.ext.is_none() && p.attr.def.name == "members" {
        if let Some(v) = &op.value {
            resource::note_unknown_subs(p.attr.def, "members", v, &mut input.ignored);
        }
        return member_op(op, &p, &mut pending.member_ops);
    }
    // A path that names a read-only attribute (`meta`, `groups`) asks for a change the
    // server cannot make (RFC 7644 §3.5.2). Echoed in a whole resource they are ignored
    // instead, as IdPs send them back unchanged. (The manager's displayName is kept as
    // sent: OneLogin fills it from its own directory, where the manager's id points.)
    if p.attr.def.mutability == Mutability::ReadOnly {
        return Err(read_only(raw_path));
    }
    // A sub-attribute of a multi-valued attribute with no filter names that sub-attribute
    // in every value, as a remove takes it from every value.
    let every_value = p.sub.is_some() && p.attr.def.multi_valued && op.op != OpKind::Remove;
    if p.filter.is_some() || every_value {
        if let (None, Some(v)) = (p.sub, &op.value) {
            let name = match p.attr.ext {
                Some(urn) => format!("{urn}:{}", p.attr.def.name),
                None => p.attr.def.name.to_string(),
            };
            resource::note_unknown_subs(p.attr.def, &name, v, &mut input.ignored);
        }
        return filtered(op, &p, input, &mut pending.hollow);
    }
    match op.op {
        OpKind::Add | OpKind::Replace => {
            let value = op.value.as_ref().unwrap_or(&Value::Null);
            let raw = raw_path.trim();
            // An extension's attribute named without its URN is set under it: a body's key
            // counts only there.
            let key = match p.attr.ext {
                Some(urn) if split_urn(kind, raw).0.is_none() => format!("{urn}:{raw}").into(),
                _ => std::borrow::Cow::Borrowed(raw),
            };
            resource::apply_key(kind, &key, value, input, mode(op.op))
        }
        OpKind::Remove => {
            remove_plain(&p, op.value.as_ref(), &mut input.body);
            Ok(())
        }
    }
}

fn apply_no_path(
    kind: Rt,
    id: &str,
    op: &Operation,
    input: &mut Input,
    pending: &mut Pending,
) -> ScimResult<()> {
    if op.op == OpKind::Remove {
        return Err(ScimError::no_target(
            "a remove operation needs a \"path\" naming what to remove",
        ));
    }
    let Some(Value::Object(obj)) = &op.value else {
        return Err(ScimError::invalid_value(
            "an add or replace without a \"path\" needs an object \"value\"",
        ));
    };
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("schemas") || k.eq_ignore_ascii_case("meta") {
            continue;
        }
        if k.eq_ignore_ascii_case("id") {
            // Okta re-sends the group's own id with every rename.
            check_id(id, Some(v))?;
            continue;
        }
        if k.contains('[') {
            // A key with a value filter is a path: applied as its own operation.
            let one = Operation {
                op: op.op,
                path: Some(k.clone()),
                value: Some(v.clone()),
            };
            apply_one(kind, id, &one, input, pending)?;
            continue;
        }
        resource::apply_key(kind, k, v, input, mode(op.op))?;
        if let Some(members) = input.members.take() {
            if op.op == OpKind::Replace {
                pending.member_ops.push(MemberOp::Clear);
            }
            if !members.is_empty() {
                pending.member_ops.push(MemberOp::Add(members));
            }
        }
    }
    Ok(())
}

/// An `id` sent back in a PATCH is fine if it names the resource, however spelled (as a
/// PUT's: any case, braces or not); blank or null is absent.
fn check_id(id: &str, value: Option<&Value>) -> ScimResult<()> {
    let same = |s: &str| {
        s == id
            || uuid::Uuid::try_parse(s.trim())
                .is_ok_and(|u| uuid::Uuid::try_parse(id).is_ok_and(|i| i == u))
    };
    match value {
        Some(Value::String(s)) if s.trim().is_empty() || same(s) => Ok(()),
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ScimError::mutability(
            "\"id\" is assigned by the server and cannot be changed",
        )),
    }
}

fn member_op(op: &Operation, p: &Path, out: &mut Vec<MemberOp>) -> ScimResult<()> {
    if p.sub.is_some() {
        // `value` is immutable and the rest read-only (RFC 7644 §3.12: mutability).
        return Err(ScimError::mutability(
            "member sub-attributes cannot be changed; add or remove the member instead",
        ));
    }
    match (op.op, &p.filter) {
        (OpKind::Add, None) => {
            let m = resource::normalize_members(op.value.as_ref().unwrap_or(&Value::Null))?;
            out.push(MemberOp::Add(m));
        }
        (OpKind::Replace, None) => {
            let m = resource::normalize_members(op.value.as_ref().unwrap_or(&Value::Null))?;
            out.push(MemberOp::Clear);
            out.push(MemberOp::Add(m));
        }
        (OpKind::Remove, None) => match &op.value {
            // Entra and JumpCloud: remove only the listed members, never the whole group.
            Some(v) => {
                let ids = resource::normalize_members(v)?
                    .into_iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect();
                out.push(MemberOp::Remove(ids));
            }
            None => out.push(MemberOp::Clear),
        },
        (OpKind::Remove, Some(f)) => match value_eq_ids(f) {
            Some(ids) => out.push(MemberOp::Remove(ids)),
            None => out.push(MemberOp::RemoveWhere(f.clone())),
        },
        (_, Some(_)) => {
            return Err(ScimError::invalid_path(
                "members can be added or replaced only without a value filter",
            ));
        }
    }
    Ok(())
}

/// `value eq "a" or value eq "b"` → the ids, so removal is by key rather than by scan.
fn value_eq_ids(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(s),
        } if path.name == "value" && path.sub.is_none() => Some(vec![s.clone()]),
        Filter::Or(a, b) => {
            let mut ids = value_eq_ids(a)?;
            ids.extend(value_eq_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}

/// Remove an attribute, a sub-attribute, or (with a value list) the listed entries of a
/// multi-valued attribute.
fn remove_plain(p: &Path, value: Option<&Value>, body: &mut Body) {
    let c = container_mut(body, p.attr);
    match (p.sub, value) {
        // A manager without its `value` is no manager: what else it holds described the one
        // removed, and must not stay to describe the next (a later `manager.value`).
        (Some(sd), _) if sd.name == "value" && resource::is_reference(p.attr.def) => {
            c.remove(p.attr.def.name);
        }
        (Some(sd), _) => {
            if let Some(Value::Object(m)) = c.get_mut(p.attr.def.name) {
                m.remove(sd.name);
                if m.is_empty() {
                    c.remove(p.attr.def.name);
                }
            } else if let Some(Value::Array(list)) = c.get_mut(p.attr.def.name) {
                for el in list.iter_mut() {
                    if let Value::Object(m) = el {
                        m.remove(sd.name);
                    }
                }
                // Normalised again: an entry left with only its type goes, and entries that
                // became equal merge.
                let left = Value::Array(list.clone());
                match resource::normalize_attr(p.attr.def, &left) {
                    Ok(Some(v)) => {
                        c.insert(p.attr.def.name.to_string(), v);
                    }
                    Ok(None) => {
                        c.remove(p.attr.def.name);
                    }
                    Err(_) => {}
                }
            }
        }
        (None, Some(v)) if p.attr.def.multi_valued => {
            let listed: Vec<Value> = match v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            let def = p.attr.def;
            if let Some(Value::Array(list)) = c.get_mut(def.name) {
                list.retain(|el| !listed.iter().any(|x| names_entry(def, x, el)));
                if list.is_empty() {
                    c.remove(p.attr.def.name);
                }
            }
        }
        (None, _) => {
            c.remove(p.attr.def.name);
        }
    }
    drop_empty_extension(body, p.attr);
}

/// Whether `listed`, one entry of a remove's value list, names the stored `entry`, each
/// value compared as the attribute compares it (`emails.value` in any case, `6.0` as the
/// integer 6): for an attribute with a `value` sub-attribute, the same `value` (a bare one
/// is that), and the same `type` when it gives one; for one without (`addresses`), the
/// same entry, sub-attribute by sub-attribute; for a simple one, the value (or its
/// `value`). An entry naming no value names nothing.
fn names_entry(def: &AttrDef, listed: &Value, entry: &Value) -> bool {
    let field = |name: &str| match listed {
        Value::Object(m) => m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
        bare => (name == "value").then_some(bare),
    };
    if def.sub_attributes.is_empty() {
        return field("value").is_some_and(|v| same_value(def, v, entry));
    }
    let same = |name: &str, want: &Value| {
        def.sub(name)
            .is_some_and(|sd| entry.get(sd.name).is_some_and(|e| same_value(sd, want, e)))
    };
    // Blank is absent, as in a write.
    let given = |name: &str| field(name).filter(|v| !blank(v));
    if def.sub("value").is_some() {
        return given("value").is_some_and(|v| same("value", v))
            && given("type").is_none_or(|t| same("type", t));
    }
    // The same entry: each sub-attribute it holds given alike (`primary` aside, which
    // absence also says), and nothing else given.
    let (Value::Object(m), Value::Object(held)) = (listed, entry) else {
        return false;
    };
    let named: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, v)| def.sub(k).is_some() && !k.eq_ignore_ascii_case("primary") && !blank(v))
        .collect();
    !named.is_empty()
        && named.iter().all(|(k, v)| same(k, v))
        && held
            .keys()
            .filter(|k| *k != "primary")
            .all(|k| named.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)))
}

/// Null, or a string of blanks: what a write reads as absent.
fn blank(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty())
}

/// A value as sent against one stored: read as the attribute reads values, then compared
/// as its filters compare them.
fn same_value(def: &AttrDef, sent: &Value, stored: &Value) -> bool {
    let Ok(Some(sent)) = resource::normalize_simple(def, sent, def.name) else {
        return false;
    };
    match (&sent, stored) {
        (Value::String(a), Value::String(b)) if !def.case_exact => fold(a) == fold(b),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Operations on `attr[filter]`, `attr[filter].sub` and `attr.sub` (every value) of a
/// multi-valued complex attribute.
fn filtered(
    op: &Operation,
    p: &Path,
    input: &mut Input,
    hollow: &mut Vec<AttrRef>,
) -> ScimResult<()> {
    let f = p.filter.as_ref();
    let def = p.attr.def;
    // Entries left without a value here (created from the filter, or stripped by a remove)
    // stay until every operation has run.
    if !hollow
        .iter()
        .any(|a| std::ptr::eq(a.def, def) && a.ext == p.attr.ext)
    {
        hollow.push(p.attr);
    }
    let mut list: Vec<Value> = container(&input.body, p.attr)
        .and_then(|c| c.get(def.name))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hits: Vec<usize> = (0..list.len())
        .filter(|&i| f.is_none_or(|f| filter::matches_element(f, def, &list[i])))
        .collect();
    match op.op {
        OpKind::Remove => {
            for &i in hits.iter().rev() {
                match p.sub {
                    Some(sd) => {
                        if let Value::Object(m) = &mut list[i] {
                            m.remove(sd.name);
                        }
                    }
                    None => {
                        list.remove(i);
                    }
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            let value = op.value.as_ref().unwrap_or(&Value::Null);
            let mut patch: Map<String, Value> = match p.sub {
                Some(sd) => {
                    let label = format!("{}.{}", def.name, sd.name);
                    let mut m = Map::new();
                    m.insert(
                        sd.name.to_string(),
                        resource::normalize_simple(sd, value, &label)?.unwrap_or(Value::Null),
                    );
                    m
                }
                // The one entry the filter names, sent as a list of one as for the
                // attribute itself.
                None => match resource::normalize_single(def, one_of(value))? {
                    Some(Value::Object(m)) => m,
                    _ => {
                        return Err(ScimError::invalid_value(format!(
                            "the value for \"{}\" with a filter must be an object of its sub-attributes",
                            def.name
                        )));
                    }
                },
            };
            if op.op == OpKind::Add {
                // An add of null or "" changes nothing, as for a path without a filter.
                patch.retain(|_, v| !v.is_null());
                if patch.is_empty() {
                    return Ok(());
                }
            }
            // One address for two entries the filter matches (two work emails): it goes to
            // the primary one, else the first; given to both, they would be duplicates.
            let hits = match hits.as_slice() {
                [first, _, ..] if patch.contains_key("value") => vec![
                    hits.iter()
                        .copied()
                        .find(|&i| list[i].get("primary") == Some(&Value::Bool(true)))
                        .unwrap_or(*first),
                ],
                _ => hits,
            };
            if patch.get("primary") == Some(&Value::Bool(true)) {
                let others = list
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| !hits.contains(i));
                resource::demote_primary(others.map(|(_, e)| e));
            }
            if hits.is_empty() {
                // Entra adds `emails[type eq "work"].value` when no work email exists yet:
                // create the entry the filter describes, so there is exactly one.
                let Some(mut entry) = f.and_then(entry_from_filter) else {
                    return Err(ScimError::no_target(match f {
                        Some(_) => {
                            format!("no entry of \"{}\" matches the path's filter", def.name)
                        }
                        None => format!(
                            "\"{}\" has no values to set \"{}\" in; add a whole value instead",
                            def.name,
                            p.sub.map(|s| s.name).unwrap_or_default()
                        ),
                    }));
                };
                for (k, v) in &patch {
                    if !v.is_null() {
                        entry.insert(k.clone(), v.clone());
                    }
                }
                // Made primary by its filter (`[type eq "work" and primary eq true]`), it
                // takes over as one sent with `primary: true` does.
                if entry.get("primary") == Some(&Value::Bool(true)) {
                    resource::demote_primary(list.iter_mut());
                }
                list.push(Value::Object(entry));
            }
            for &i in &hits {
                // The matched entry is a complex value: sub-attributes the value leaves
                // out stay as they were (RFC 7644 §3.5.2.3), so a replace of
                // `emails[type eq "work"]` with a new address keeps the entry's type.
                if let Value::Object(m) = &mut list[i] {
                    for (k, v) in &patch {
                        if v.is_null() {
                            m.remove(k);
                        } else {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
    }
    list.retain(|el| el.as_object().is_some_and(|m| !m.is_empty()));
    // Re-run normalisation so `primary` stays unique.
    let normalized = resource::normalize_attr_keeping_hollow(def, &Value::Array(list))?;
    let c = container_mut(&mut input.body, p.attr);
    match normalized {
        Some(v) => {
            c.insert(def.name.to_string(), v);
        }
        None => {
            c.remove(def.name);
        }
    }
    drop_empty_extension(&mut input.body, p.attr);
    Ok(())
}

/// Normalise again the attributes where an operation created an entry from its filter: one
/// that no later operation gave a value is no entry at all, as in a POST, and takes over
/// `primary` from none (`before` is the resource the operations started from).
fn drop_hollow(hollow: &[AttrRef], before: &Body, body: &mut Body) -> ScimResult<()> {
    for &attr in hollow {
        let c = container_mut(body, attr);
        let Some(now) = c.get(attr.def.name) else {
            continue;
        };
        let took_primary = resource::holds_hollow_primary(now);
        match resource::normalize_attr(attr.def, now)? {
            Some(v) => {
                c.insert(attr.def.name.to_string(), v);
            }
            None => {
                c.remove(attr.def.name);
            }
        }
        if took_primary {
            let was = container(before, attr).and_then(|c| c.get(attr.def.name));
            resource::give_back_primary(was, c.get_mut(attr.def.name));
        }
        drop_empty_extension(body, attr);
    }
    Ok(())
}

fn one_of(value: &Value) -> &Value {
    match value {
        Value::Array(a) if a.len() == 1 => &a[0],
        v => v,
    }
}

/// `type eq "work" and primary eq true` → `{"type":"work","primary":true}`; `None` when the
/// filter is anything but a conjunction of equalities.
fn entry_from_filter(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub.is_none() => {
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Num(n, _) => serde_json::Number::from_f64(*n).map(Value::Number)?,
                CompValue::Null => return None,
            };
            Some(Map::from_iter([(path.name.clone(), v)]))
        }
        Filter::And(a, b) => {
            let mut m = entry_from_filter(a)?;
            m.extend(entry_from_filter(b)?);
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_SCHEMA;
    use serde_json::json;

    fn body(v: Value) -> Body {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn run(kind: Kind, b: Value, ops: Value) -> ScimResult<Outcome> {
        let req = json!({"schemas": [PATCH_OP], "Operations": ops});
        let ops = parse_request(&req)?;
        apply(kind, "ID1", &body(b), &ops)
    }

    fn user() -> Value {
        json!({"userName": "bjensen", "active": true,
            "emails": [{"value": "b@work", "type": "work", "primary": true},
                       {"value": "b@home", "type": "home"}],
            "name": {"givenName": "Barbara", "familyName": "Jensen"}})
    }

    #[test]
    fn a_patch_body_names_the_patch_schema_in_a_list_or_alone() {
        use crate::scim::error::ScimType;
        use crate::scim::schema::USER_SCHEMA;
        let op = json!([{"op": "replace", "path": "title", "value": "t"}]);
        for schemas in [
            json!([PATCH_OP]),
            json!(PATCH_OP),
            json!([USER_SCHEMA, PATCH_OP]),
        ] {
            let ops = parse_request(&json!({"schemas": schemas, "Operations": op}));
            assert_eq!(ops.map(|o| o.len()).ok(), Some(1), "{schemas}");
        }
        for schemas in [
            json!([]),
            json!(USER_SCHEMA),
            json!([USER_SCHEMA]),
            json!(7),
        ] {
            let e = parse_request(&json!({"schemas": schemas, "Operations": op})).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax), "{schemas}");
        }
    }

    #[test]
    fn adding_nothing_changes_nothing() {
        let mut u = user();
        u["title"] = json!("Boss");
        for ops in [
            json!([{"op": "add", "path": "emails", "value": [{"type": "work", "value": ""}]}]),
            json!([{"op": "add", "path": "emails", "value": []}]),
            json!([{"op": "add", "path": "emails", "value": [{"type": "work", "primary": true}]}]),
            json!([{"op": "add", "value": {"emails": [], "title": null, "name": {}}}]),
            json!([{"op": "add", "value": {"title": "", "name": {"givenName": null}}}]),
            json!([{"op": "add", "path": "name", "value": {"givenName": ""}}]),
            json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": ""}]),
            // Sub-attributes named by a dotted path or key, and blanks for complex values.
            json!([{"op": "add", "path": "name.givenName", "value": ""}]),
            json!([{"op": "add", "value": {"name.givenName": null, "name.familyName": ""}}]),
            json!([{"op": "add", "path": format!("{ENTERPRISE_SCHEMA}:manager.displayName"), "value": ""}]),
            json!([{"op": "add", "path": "emails", "value": ""}]),
            json!([{"op": "add", "path": "name", "value": ""}]),
            json!([{"op": "add", "value": {"emails": "", "addresses": [" "]}}]),
            json!([{"op": "add", "path": "name", "value": "  "}]),
        ] {
            let mut u = u.clone();
            u[ENTERPRISE_SCHEMA] = json!({"manager": {"value": "m1", "displayName": "M"}});
            let out = run(Kind::User, u.clone(), ops.clone()).unwrap();
            assert_eq!(Value::Object(out.body), u, "{ops}");
        }
        // A replace of the same sub-attribute with a blank still clears it.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "name.givenName", "value": ""}]),
        )
        .unwrap();
        assert_eq!(out.body["name"], json!({"familyName": "Jensen"}));
    }

    #[test]
    fn a_replace_of_some_sub_attributes_leaves_the_others() {
        for value in [json!({"givenName": null}), json!({"givenName": ""})] {
            for ops in [
                json!([{"op": "replace", "path": "name", "value": value.clone()}]),
                json!([{"op": "replace", "value": {"name": value.clone()}}]),
            ] {
                let out = run(Kind::User, user(), ops.clone()).unwrap();
                assert_eq!(out.body["name"], json!({"familyName": "Jensen"}), "{ops}");
            }
        }
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "B", "familyName": null}}]),
        )
        .unwrap();
        assert_eq!(out.body["name"], json!({"givenName": "B"}));
        // A manager whose value is cleared is gone, whatever else described it.
        let mut u = user();
        u[ENTERPRISE_SCHEMA] = json!({"manager": {"value": "m1", "displayName": "M"}});
        let out = run(
            Kind::User,
            u,
            json!([{"op": "replace", "path": format!("{ENTERPRISE_SCHEMA}:manager"), "value": {"value": ""}}]),
        )
        .unwrap();
        assert!(out.body.get(ENTERPRISE_SCHEMA).is_none(), "{:?}", out.body);
        // A null for the whole attribute still clears it.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "name", "value": null}]),
        )
        .unwrap();
        assert!(out.body.get("name").is_none());
    }

    #[test]
    fn a_sub_attribute_path_without_a_filter_names_it_in_every_value() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails.display", "value": "B"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": true, "display": "B"},
                   {"value": "b@home", "type": "home", "display": "B"}])
        );
        assert!(out.ignored.is_empty(), "{:?}", out.ignored);
        // Both entries may become "home", as a PUT could make them.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails.type", "value": "home"}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"][0]["type"], "home");
        assert_eq!(out.body["emails"][1]["type"], "home");
        // With no value to set it in, there is nothing to target.
        let e = run(
            Kind::User,
            json!({"userName": "u"}),
            json!([{"op": "add", "path": "emails.value", "value": "u@x"}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::NoTarget));
    }

    #[test]
    fn a_null_active_never_reactivates_but_a_remove_clears_it() {
        let off = json!({"userName": "u", "active": false, "title": "t"});
        for ops in [
            json!([{"op": "replace", "path": "active", "value": null}]),
            json!([{"op": "Replace", "value": {"active": null, "title": null}}]),
            json!([{"op": "add", "path": "active", "value": null}]),
            json!([{"op": "replace", "path": "active", "value": ""}]),
        ] {
            let out = run(Kind::User, off.clone(), ops.clone()).unwrap();
            assert_eq!(out.body.get("active"), Some(&json!(false)), "{ops}");
        }
        // Other attributes still clear on null.
        let out = run(
            Kind::User,
            off.clone(),
            json!([{"op": "replace", "path": "title", "value": null}]),
        )
        .unwrap();
        assert!(!out.body.contains_key("title"));
        let out = run(Kind::User, off, json!([{"op": "remove", "path": "active"}])).unwrap();
        assert!(!out.body.contains_key("active"));
    }

    #[test]
    fn entra_capitalised_ops_and_string_booleans() {
        let out = run(
            Kind::User,
            user(),
            json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "nickName", "value": "Babs"}]),
        )
        .unwrap();
        assert_eq!(out.body["active"], json!(false));
        assert_eq!(out.body["nickName"], json!("Babs"));
        let e = run(
            Kind::User,
            user(),
            json!([{"op": "Replace", "path": "active", "value": "nope"}]),
        )
        .unwrap_err();
        assert_eq!(
            e.scim_type,
            Some(crate::scim::error::ScimType::InvalidValue)
        );
    }

    #[test]
    fn a_null_value_clears_and_an_added_null_changes_nothing() {
        let mut u = user();
        u[ENTERPRISE_SCHEMA] = json!({"manager": {"value": "m-1"}, "department": "Ops"});
        let manager = format!("{ENTERPRISE_SCHEMA}:manager");
        let out = run(
            Kind::User,
            u,
            json!([
            {"op": "Replace", "path": manager, "value": null},
            {"op": "replace", "path": "name.givenName", "value": null},
            {"op": "add", "path": "title", "value": null},
            {"op": "replace", "path": "emails[type eq \"home\"].value", "value": null}]),
        )
        .unwrap();
        assert_eq!(out.body[ENTERPRISE_SCHEMA], json!({"department": "Ops"}));
        assert_eq!(out.body["name"], json!({"familyName": "Jensen"}));
        assert!(out.body.get("title").is_none());
        // The home email had nothing left but its type: it is gone, not an empty shell.
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": true}])
        );
        // A missing value is still an error; a null without a path has nothing to clear.
        for op in [
            json!({"op": "add", "path": "title"}),
            json!({"op": "replace", "value": null}),
        ] {
            let e = run(Kind::User, user(), json!([op])).unwrap_err();
            assert_eq!(e.status, 400, "{}", e.detail);
        }
        let e = run(Kind::User, user(), json!([{"op": "remove", "path": "id"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::Mutability));
        // Adding null changes nothing, yet its path is judged as any other add's is.
        use crate::scim::error::ScimType::{InvalidPath, Mutability};
        for (path, ty) in [
            ("emails[type eq", InvalidPath),
            ("name..givenName", InvalidPath),
            ("meta", Mutability),
            ("groups", Mutability),
        ] {
            let op = json!([{"op": "add", "path": path, "value": null}]);
            let e = run(Kind::User, user(), op).unwrap_err();
            assert_eq!(e.scim_type, Some(ty), "{path}: {}", e.detail);
        }
        for path in ["id", "nickName", ENTERPRISE_SCHEMA, "urn:x:unknown:attr"] {
            let op = json!([{"op": "add", "path": path, "value": null}]);
            assert!(run(Kind::User, user(), op).is_ok(), "{path}");
        }
    }

    #[test]
    fn an_extension_urn_as_the_path_names_the_whole_extension() {
        let mut u = user();
        u[ENTERPRISE_SCHEMA] = json!({"department": "Ops", "costCenter": "7"});
        let out = run(
            Kind::User,
            u.clone(),
            json!([{"op": "add", "path": ENTERPRISE_SCHEMA, "value": {"division": "North"}}]),
        )
        .unwrap();
        assert_eq!(
            out.body[ENTERPRISE_SCHEMA],
            json!({"department": "Ops", "costCenter": "7", "division": "North"})
        );
        let lower = ENTERPRISE_SCHEMA.to_lowercase();
        let out = run(Kind::User, u, json!([{"op": "Remove", "path": lower}])).unwrap();
        assert!(out.body.get(ENTERPRISE_SCHEMA).is_none(), "{:?}", out.body);
        assert_eq!(out.body["userName"], json!("bjensen"));
    }

    #[test]
    fn making_a_later_entry_primary_clears_the_earlier_one() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": false},
                   {"value": "b@home", "type": "home", "primary": true}])
        );
    }

    #[test]
    fn a_filter_path_may_give_a_second_entry_a_type() {
        // Two entries of one type are stored as a POST sends them, so a PATCH may make them.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails[value eq \"b@home\"].type", "value": "work"}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"][0]["type"], json!("work"));
        assert_eq!(out.body["emails"][1]["type"], json!("work"));
        assert_eq!(out.body["emails"][1]["value"], json!("b@home"));
    }

    #[test]
    fn two_work_values_take_one_address_on_the_primary() {
        let mut u = user();
        u["emails"] = json!([{"value": "a@w", "type": "work", "primary": true},
                             {"value": "b@w", "type": "work"}]);
        let out = run(
            Kind::User,
            u.clone(),
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "c@w"}]),
        )
        .unwrap();
        // The primary one takes the address; the other stays as it was.
        assert_eq!(
            out.body["emails"],
            json!([{"value": "c@w", "type": "work", "primary": true}, {"value": "b@w", "type": "work"}])
        );
        // So does the first when neither is primary, and an add does the same.
        u["emails"][0]["primary"] = json!(false);
        let out = run(
            Kind::User,
            u.clone(),
            json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "d@w"}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"][0]["value"], "d@w");
        assert_eq!(out.body["emails"][1]["value"], "b@w");
        // An add of the second address, already there, changes nothing.
        let out = run(
            Kind::User,
            u.clone(),
            json!([{"op": "add", "path": "emails", "value": [{"type": "work", "value": "b@w"}]}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"], u["emails"]);
    }

    #[test]
    fn an_added_entry_of_a_type_already_there_is_appended() {
        let mut u = user();
        u["addresses"] = json!([{"type": "work", "locality": "Paris"}]);
        let out = run(
            Kind::User,
            u.clone(),
            json!([
                {"op": "add", "path": "addresses", "value": [{"type": "work", "locality": "Lyon"}]},
                {"op": "add", "path": "emails", "value": [{"type": "work", "value": "new@work"}]},
                {"op": "add", "path": "phoneNumbers", "value": [{"type": "work", "value": "222"}]}]),
        )
        .unwrap();
        // RFC 7644 §3.5.2.1: a new value is added; the one there is kept, and stays primary.
        assert_eq!(
            out.body["addresses"],
            json!([{"type": "work", "locality": "Paris"}, {"type": "work", "locality": "Lyon"}])
        );
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": true},
                   {"value": "b@home", "type": "home"}, {"value": "new@work", "type": "work"}])
        );
        assert_eq!(
            out.body["phoneNumbers"],
            json!([{"value": "222", "type": "work"}])
        );
        // The same without a path; an added `primary: true` takes over.
        let out = run(
            Kind::User,
            u.clone(),
            json!([{"op": "add", "value": {"emails": [
                {"type": "work", "value": "new@work", "primary": true}]}}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": false},
                   {"value": "b@home", "type": "home"},
                   {"value": "new@work", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn entra_no_path_replace_with_dotted_and_urn_keys() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "value": {
            "displayName": "Bjfe", "name.givenName": "Kkom", "name.familyName": "Unua",
            (format!("{ENTERPRISE_SCHEMA}:employeeNumber")): "Aklq"}}]),
        )
        .unwrap();
        assert_eq!(
            out.body["name"],
            json!({"givenName": "Kkom", "familyName": "Unua"})
        );
        assert_eq!(out.body[ENTERPRISE_SCHEMA]["employeeNumber"], json!("Aklq"));
        assert_eq!(out.body["displayName"], json!("Bjfe"));
    }

    #[test]
    fn the_core_urn_as_a_no_path_key_holds_core_attributes() {
        let value = json!({"urn:ietf:params:scim:schemas:core:2.0:User": {
            "title": "CTO", "active": false, "name": {"givenName": "Kkom"}}});
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "value": value}]),
        )
        .unwrap();
        assert_eq!(out.body["title"], json!("CTO"));
        assert_eq!(out.body["active"], json!(false));
        assert_eq!(out.body["name"]["givenName"], json!("Kkom"));
        assert!(out.ignored.is_empty(), "{:?}", out.ignored);
        let bad = json!({"urn:ietf:params:scim:schemas:core:2.0:User": "x"});
        let e = run(Kind::User, user(), json!([{"op": "replace", "value": bad}])).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn work_email_value_filter_updates_or_creates_exactly_one() {
        for op in ["Replace", "Add"] {
            let out = run(
                Kind::User,
                user(),
                json!([
                {"op": op, "path": "emails[type eq \"work\"].value", "value": "new@work"}]),
            )
            .unwrap();
            let emails = out.body["emails"].as_array().unwrap();
            assert_eq!(emails.len(), 2);
            assert_eq!(
                emails[0],
                json!({"value": "new@work", "type": "work", "primary": true})
            );
        }
        let out = run(
            Kind::User,
            json!({"userName": "u"}),
            json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@work"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"type": "work", "value": "x@work"}])
        );
        let again = apply(
            Kind::User,
            "ID1",
            &out.body,
            &parse_request(&json!({"Operations": [
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "y@work"}]}))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            again.body["emails"],
            json!([{"type": "work", "value": "y@work"}])
        );
    }

    #[test]
    fn an_entry_a_filter_makes_primary_takes_over_from_the_primary_one() {
        let out = run(
            Kind::User,
            json!({"userName": "u", "emails": [{"value": "old@x", "type": "home", "primary": true}]}),
            json!([{"op": "add", "path": "emails[type eq \"work\" and primary eq true].value",
                "value": "new@x"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "old@x", "type": "home", "primary": false},
                {"type": "work", "primary": true, "value": "new@x"}])
        );
    }

    #[test]
    fn operations_apply_in_order_through_an_entry_that_has_no_value_yet() {
        // `primary` first, then the address: the entry the first creates is the one the
        // second fills, so it keeps `primary`.
        let out = run(
            Kind::User,
            json!({"userName": "u"}),
            json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": "True"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "z@work"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"type": "work", "primary": true, "value": "z@work"}])
        );
        // An entry no operation gives a value is no entry, as in a POST; nor is one whose
        // value an operation took away.
        for ops in [
            json!([{"op": "add", "path": "emails[type eq \"work\"].primary", "value": true}]),
            json!([
            {"op": "add", "path": "emails[type eq \"work\"].value", "value": "z@work"},
            {"op": "remove", "path": "emails[type eq \"work\"].value"}]),
        ] {
            let out = run(Kind::User, json!({"userName": "u"}), ops.clone()).unwrap();
            assert_eq!(out.body.get("emails"), None, "{ops}");
        }
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"].value"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "b@work", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn an_entry_made_primary_but_never_filled_takes_primary_from_none() {
        let one = || json!({"userName": "u", "emails": [{"value": "p@x", "type": "work", "primary": true}]});
        let out = run(
            Kind::User,
            one(),
            json!([{"op": "add", "path": "emails[type eq \"home\"].primary", "value": true}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"], one()["emails"]);
        // Filled by a later operation, it keeps the takeover.
        let out = run(
            Kind::User,
            one(),
            json!([{"op": "add", "path": "emails[type eq \"home\"].primary", "value": true},
                   {"op": "add", "path": "emails[type eq \"home\"].value", "value": "h@x"}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"],
            json!([{"value": "p@x", "type": "work", "primary": false},
                   {"type": "home", "primary": true, "value": "h@x"}])
        );
    }

    #[test]
    fn a_new_manager_drops_the_old_managers_name() {
        let b = json!({"userName": "u",
            (ENTERPRISE_SCHEMA): {"manager": {"value": "A", "displayName": "Ann"}}});
        let path = format!("{ENTERPRISE_SCHEMA}:manager");
        let out = run(
            Kind::User,
            b.clone(),
            json!([{"op": "replace", "path": path, "value": "B"}]),
        )
        .unwrap();
        assert_eq!(
            out.body[ENTERPRISE_SCHEMA],
            json!({"manager": {"value": "B"}})
        );
        // The same manager again keeps what is known about it.
        let out = run(
            Kind::User,
            b.clone(),
            json!([{"op": "replace", "path": path, "value": {"value": "A"}}]),
        )
        .unwrap();
        assert_eq!(out.body[ENTERPRISE_SCHEMA]["manager"]["displayName"], "Ann");
        // So does a new `manager.value`, by path or as a no-path key; the same one keeps it.
        let sub = format!("{path}.value");
        for (op, to, name) in [
            (
                json!({"op": "replace", "path": sub, "value": "B"}),
                "B",
                None,
            ),
            (json!({"op": "add", "path": sub, "value": "B"}), "B", None),
            (
                json!({"op": "replace", "value": {(sub.clone()): "B"}}),
                "B",
                None,
            ),
            (
                json!({"op": "replace", "path": sub, "value": "A"}),
                "A",
                Some("Ann"),
            ),
        ] {
            let out = run(Kind::User, b.clone(), json!([op])).unwrap();
            let m = &out.body[ENTERPRISE_SCHEMA]["manager"];
            assert_eq!(m["value"], to, "{op}");
            assert_eq!(m["displayName"].as_str(), name, "{op}");
        }
    }

    #[test]
    fn a_manager_change_without_value_keeps_the_manager() {
        let b = json!({"userName": "u",
            (ENTERPRISE_SCHEMA): {"manager": {"value": "A", "displayName": "Ann"}}});
        let path = format!("{ENTERPRISE_SCHEMA}:manager");
        let kept = json!({"manager": {"value": "A", "displayName": "Bob"}});
        for ops in [
            json!([{"op": "replace", "path": path, "value": {"displayName": "Bob"}}]),
            json!([{"op": "add", "path": path, "value": {"displayName": "Bob"}}]),
            json!([{"op": "replace", "value": {(ENTERPRISE_SCHEMA): {"manager": {"displayName": "Bob"}}}}]),
        ] {
            let out = run(Kind::User, b.clone(), ops.clone()).unwrap();
            assert_eq!(out.body[ENTERPRISE_SCHEMA], kept, "{ops}");
        }
        // An empty value still means no manager (OneLogin's unset template field) ...
        let out = run(
            Kind::User,
            b.clone(),
            json!([{"op": "replace", "path": path, "value": {"value": "", "displayName": " "}}]),
        )
        .unwrap();
        assert!(!out.body.contains_key(ENTERPRISE_SCHEMA));
        // ... and a manager left without an id, however it came about, is none.
        let out = run(
            Kind::User,
            b.clone(),
            json!([{"op": "remove", "path": format!("{path}.value")}]),
        )
        .unwrap();
        assert!(!out.body.contains_key(ENTERPRISE_SCHEMA));
        // Nor does what described the old one pass to a manager set later in the request.
        let new = json!({"manager": {"value": "B"}});
        for clear in [
            json!({"op": "remove", "path": format!("{path}.value")}),
            json!({"op": "replace", "path": format!("{path}.value"), "value": ""}),
            json!({"op": "replace", "value": {(format!("{path}.value")): null}}),
        ] {
            let set = json!({"op": "add", "path": format!("{path}.value"), "value": "B"});
            let out = run(Kind::User, b.clone(), json!([clear, set])).unwrap();
            assert_eq!(out.body[ENTERPRISE_SCHEMA], new, "{clear}");
        }
        let put = resource::normalize(
            Kind::User,
            &json!({"userName": "u", (ENTERPRISE_SCHEMA): {"manager": {"displayName": "Bob"}}}),
        )
        .unwrap();
        assert!(!put.body.contains_key(ENTERPRISE_SCHEMA));
    }

    #[test]
    fn a_filtered_replace_keeps_what_the_value_leaves_out() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "x@work"}}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"][0],
            json!({"value": "x@work", "type": "work", "primary": true})
        );
        // Entra's next cycle changes the same entry instead of adding a second work email.
        let again = run(
            Kind::User,
            Value::Object(out.body),
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "z@work"}]),
        )
        .unwrap();
        assert_eq!(again.body["emails"].as_array().unwrap().len(), 2);
        assert_eq!(
            again.body["emails"][0],
            json!({"value": "z@work", "type": "work", "primary": true})
        );
    }

    #[test]
    fn a_filtered_entry_may_come_as_a_list_of_one() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "add", "path": "emails[type eq \"work\"]", "value": [{"value": "l@work"}]}]),
        )
        .unwrap();
        assert_eq!(
            out.body["emails"][0],
            json!({"value": "l@work", "type": "work", "primary": true})
        );
        let two = json!([{"op": "add", "path": "emails[type eq \"work\"]",
            "value": [{"value": "a@work"}, {"value": "b@work"}]}]);
        assert_eq!(run(Kind::User, user(), two).unwrap_err().status, 400);
    }

    #[test]
    fn a_no_path_key_with_a_value_filter_is_a_path() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "value": {
                "emails[type eq \"work\"].value": "np@work", "name.givenName": "NP"}}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"][0]["value"], "np@work");
        assert_eq!(out.body["emails"][0]["type"], "work");
        assert_eq!(out.body["name"]["givenName"], "NP");
        assert!(out.ignored.is_empty(), "{:?}", out.ignored);
    }

    #[test]
    fn manager_as_bare_string_becomes_object() {
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "add",
            "path": format!("{ENTERPRISE_SCHEMA}:manager"), "value": "2c2f6fb8"}]),
        )
        .unwrap();
        assert_eq!(
            out.body[ENTERPRISE_SCHEMA]["manager"],
            json!({"value": "2c2f6fb8"})
        );
    }

    #[test]
    fn complex_replace_merges_and_multi_add_appends() {
        let out = run(
            Kind::User,
            user(),
            json!([
            {"op": "replace", "path": "name", "value": {"familyName": "J"}},
            {"op": "add", "path": "emails", "value": [{"value": "c@other", "type": "other"}]}]),
        )
        .unwrap();
        assert_eq!(
            out.body["name"],
            json!({"givenName": "Barbara", "familyName": "J"})
        );
        assert_eq!(out.body["emails"].as_array().unwrap().len(), 3);
        let out = run(
            Kind::User,
            user(),
            json!([
            {"op": "replace", "path": "emails", "value": [{"value": "only@x"}]}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"], json!([{"value": "only@x"}]));
    }

    #[test]
    fn a_value_list_removes_the_entries_it_names_as_their_attribute_compares() {
        let emails = |ops: Value| {
            let out = run(Kind::User, user(), ops).unwrap();
            let list = out.body["emails"].as_array().cloned().unwrap_or_default();
            list.iter()
                .map(|e| e["value"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let remove = |value: Value| json!([{"op": "remove", "path": "emails", "value": value}]);
        // emails.value is not caseExact; a bare value is the entry's value.
        assert_eq!(emails(remove(json!([{"value": "B@WORK"}]))), ["b@home"]);
        assert_eq!(emails(remove(json!("b@Home"))), ["b@work"]);
        // A blank type is no type, as in a write.
        assert_eq!(
            emails(remove(json!([{"value": "b@work", "type": " "}]))),
            ["b@home"]
        );
        // A type given must be the entry's too.
        assert_eq!(
            emails(remove(json!([{"value": "b@work", "type": "home"}]))),
            ["b@work", "b@home"]
        );
        assert_eq!(
            emails(remove(json!([{"value": "b@work", "type": "Work"}]))),
            ["b@home"]
        );
        // Nothing named without a value.
        for none in [
            json!([{"type": "work"}]),
            json!([{}]),
            json!([null]),
            json!([""]),
        ] {
            assert_eq!(emails(remove(none.clone())), ["b@work", "b@home"], "{none}");
        }
        // A user's roles are not caseExact either; a simple integer list reads 6.0 as 6.
        let mut u = user();
        u["roles"] = json!([{"value": "Admin"}, {"value": "dev"}]);
        let out = run(
            Kind::User,
            u,
            json!([{"op": "remove", "path": "roles", "value": [{"value": "admin"}]}]),
        )
        .unwrap();
        assert_eq!(out.body["roles"], json!([{"value": "dev"}]));
        let levels = AttrDef {
            name: "levels",
            ty: crate::scim::schema::AttrType::Integer,
            multi_valued: true,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: crate::scim::schema::Returned::Default,
            uniqueness: crate::scim::schema::Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description: "",
            unset: None,
        };
        for (sent, gone) in [
            (json!(6.0), true),
            (json!(6), true),
            (json!({"value": 6}), true),
            (json!({"Value": 6}), true),
            (json!(6.5), false),
        ] {
            assert_eq!(names_entry(&levels, &sent, &json!(6)), gone, "{sent}");
        }
        // An attribute without a `value` (addresses): the sub-attributes given.
        let mut u = user();
        u["addresses"] = json!([
            {"streetAddress": "1 Main St", "locality": "Springfield", "type": "work"},
            {"streetAddress": "2 Elm St", "locality": "Shelbyville", "type": "home"}]);
        let remove = |value: Value| {
            let out = run(
                Kind::User,
                u.clone(),
                json!([{"op": "remove", "path": "addresses", "value": value}]),
            )
            .unwrap();
            out.body["addresses"].as_array().map_or(0, Vec::len)
        };
        assert_eq!(remove(json!([u["addresses"][0].clone()])), 1);
        let shouted =
            json!([{"streetAddress": "1 MAIN ST", "locality": "springfield", "type": "Work"}]);
        assert_eq!(remove(shouted), 1);
        // `primary` aside, and blanks are absent.
        let mut flagged = u["addresses"][0].clone();
        flagged["primary"] = json!(false);
        flagged["country"] = json!("");
        assert_eq!(remove(json!([flagged])), 1);
        // Part of an entry is not the entry.
        assert_eq!(
            remove(json!([{"locality": "Springfield", "type": "work"}])),
            2
        );
        let other =
            json!([{"streetAddress": "1 Main St", "locality": "Springfield", "type": "home"}]);
        assert_eq!(remove(other), 2);
        assert_eq!(remove(json!([{}])), 2);
        assert_eq!(remove(json!([{"unknown": "x"}])), 2);
    }

    /// The resource's own id sent back, however spelled, or blank, changes nothing; another
    /// is refused. A remove of read-only `groups` is refused as read-only, value or not.
    #[test]
    fn an_id_sent_back_and_read_only_removes() {
        let id = "0190b7a4-7c4e-7000-8000-00000000002a";
        let req = |ops: Value| parse_request(&json!({"schemas": [PATCH_OP], "Operations": ops}));
        for same in [
            json!(id),
            json!(id.to_uppercase()),
            json!(format!("{{{id}}}")),
            json!(""),
            json!(null),
        ] {
            for ops in [
                json!([{"op": "replace", "path": "id", "value": same}]),
                json!([{"op": "replace", "value": {"id": same, "title": "x"}}]),
            ] {
                let out = apply(Kind::User, id, &body(user()), &req(ops.clone()).unwrap());
                assert!(out.is_ok(), "{ops}");
            }
        }
        let other =
            json!([{"op": "replace", "value": {"id": "0190b7a4-7c4e-7000-8000-00000000002b"}}]);
        let e = apply(Kind::User, id, &body(user()), &req(other).unwrap()).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::Mutability));
        for value in [None, Some(json!(null)), Some(json!([]))] {
            let mut op = json!({"op": "remove", "path": "groups"});
            if let Some(v) = value.clone() {
                op["value"] = v;
            }
            let e = run(Kind::User, user(), json!([op])).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::Mutability),
                "{value:?}"
            );
        }
    }

    #[test]
    fn remove_forms() {
        let out = run(
            Kind::User,
            user(),
            json!([
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "remove", "path": "name.givenName"}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"].as_array().unwrap().len(), 1);
        assert_eq!(out.body["name"], json!({"familyName": "Jensen"}));
        let e = run(Kind::User, user(), json!([{"op": "remove"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::NoTarget));
        // Leaving a required attribute unassigned is a mutability error (RFC 7644
        // §3.5.2.2), by remove, null or empty string alike.
        for op in [
            json!({"op": "remove", "path": "userName"}),
            json!({"op": "replace", "path": "userName", "value": null}),
            json!({"op": "replace", "value": {"userName": ""}}),
        ] {
            let e = run(Kind::User, user(), json!([op])).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::Mutability),
                "{op}"
            );
            assert!(e.detail.contains("userName"), "{}", e.detail);
        }
    }

    #[test]
    fn read_only_values_are_refused_by_path_and_ignored_when_echoed() {
        let with_manager = json!({"userName": "u",
            (ENTERPRISE_SCHEMA): {"manager": {"value": "M1"}}});
        for path in ["meta.lastModified", "groups", "groups[value eq \"G\"]"] {
            for op in ["add", "replace", "remove"] {
                let e = run(
                    Kind::User,
                    with_manager.clone(),
                    json!([{"op": op, "path": path, "value": "x"}]),
                )
                .unwrap_err();
                assert_eq!(
                    e.scim_type,
                    Some(crate::scim::error::ScimType::Mutability),
                    "{op} {path}"
                );
            }
        }
        // Echoed in a no-path value, they change nothing and fail nothing.
        let out = run(
            Kind::User,
            with_manager.clone(),
            json!([{"op": "replace", "value": {"groups": [{"value": "G"}],
                "meta": {"version": "W/\"9\""}, "title": "t"}}]),
        )
        .unwrap();
        assert_eq!(out.body.get("groups"), None);
        assert_eq!(out.body.get("meta"), None);
        assert_eq!(out.body["title"], "t");
        // The manager's displayName is kept as sent (OneLogin's name for an id of its own).
        let out = run(
            Kind::User,
            with_manager,
            json!([{"op": "replace",
                "path": format!("{ENTERPRISE_SCHEMA}:manager.displayName"), "value": "M"}]),
        )
        .unwrap();
        assert_eq!(
            out.body[ENTERPRISE_SCHEMA],
            json!({"manager": {"value": "M1", "displayName": "M"}})
        );
    }

    #[test]
    fn atomic_all_or_nothing() {
        let original = body(user());
        let ops = parse_request(&json!({"Operations": [
            {"op": "replace", "path": "displayName", "value": "X"},
            {"op": "replace", "path": "emails[type eq]", "value": "x"}]}))
        .unwrap();
        assert!(apply(Kind::User, "ID1", &original, &ops).is_err());
        assert_eq!(Value::Object(original), user());
    }

    #[test]
    fn id_must_match_and_unknown_ops_fail() {
        assert!(
            run(
                Kind::Group,
                json!({"displayName": "G"}),
                json!([
            {"op": "replace", "value": {"id": "ID1", "displayName": "G2"}}])
            )
            .is_ok()
        );
        let e = run(
            Kind::Group,
            json!({"displayName": "G"}),
            json!([
            {"op": "replace", "value": {"id": "OTHER"}}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::Mutability));
        assert!(run(Kind::User, user(), json!([{"op": "move", "path": "x"}])).is_err());
    }

    #[test]
    fn member_operations_come_out_as_key_changes() {
        let g = json!({"displayName": "G"});
        let out = run(
            Kind::Group,
            g.clone(),
            json!([
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "Remove", "path": "members", "value": [{"value": "b"}]},
            {"op": "add", "path": "members", "value": [{"value": "c", "display": "x"}]},
            {"op": "remove", "path": "members"}]),
        )
        .unwrap();
        assert_eq!(
            out.member_ops,
            vec![
                MemberOp::Remove(vec!["a".into()]),
                MemberOp::Remove(vec!["b".into()]),
                MemberOp::Add(vec![json!({"value": "c", "display": "x"})]),
                MemberOp::Clear,
            ]
        );
        let out = run(
            Kind::Group,
            g,
            json!([
            {"op": "replace", "value": {"members": [{"value": "d"}], "displayName": "H"}}]),
        )
        .unwrap();
        assert_eq!(
            out.member_ops,
            vec![MemberOp::Clear, MemberOp::Add(vec![json!({"value": "d"})])]
        );
        assert_eq!(out.body["displayName"], json!("H"));
        // A remove whose value list is empty removes no one; a null one is refused (left
        // out, every member goes).
        let out = run(
            Kind::Group,
            json!({"displayName": "G"}),
            json!([{"op": "remove", "path": "members", "value": []}]),
        )
        .unwrap();
        assert_eq!(out.member_ops, vec![MemberOp::Remove(vec![])]);
        for (kind, body, path) in [
            (Kind::Group, json!({"displayName": "G"}), "members"),
            (Kind::User, user(), "emails"),
        ] {
            let e = run(
                kind,
                body,
                json!([{"op": "remove", "path": path, "value": null}]),
            )
            .unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::InvalidValue)
            );
            assert!(e.detail.contains("leave \"value\" out"), "{}", e.detail);
        }
        // A null `replace` still clears it.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails", "value": null}]),
        )
        .unwrap();
        assert!(out.body.get("emails").is_none());
    }

    #[test]
    fn unknown_paths_are_ignored_and_reported() {
        let out = run(
            Kind::User,
            user(),
            json!([
            {"op": "replace", "path": "urn:acme:2.0:User:shoe", "value": "9"}]),
        )
        .unwrap();
        assert_eq!(Value::Object(out.body), user());
        assert_eq!(
            out.ignored.attributes,
            vec!["urn:acme:2.0:User:shoe".to_string()]
        );
        // A SCIM 1.1 member removal (`"operation": "delete"`) is no RFC 7644 one: the
        // member is added as asked, and the admin hears what was passed over.
        let out = run(
            Kind::Group,
            json!({"displayName": "G"}),
            json!([{"op": "add", "path": "members",
                "value": [{"value": "U1", "operation": "delete"}]}]),
        )
        .unwrap();
        assert!(matches!(&out.member_ops[..], [MemberOp::Add(m)] if m.len() == 1));
        assert_eq!(out.ignored.attributes, ["members.operation"]);
        // The same for a value that a filtered path sets.
        let out = run(
            Kind::User,
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"]",
                "value": {"value": "w@x.org", "label": "desk"}}]),
        )
        .unwrap();
        assert_eq!(out.body["emails"][0]["value"], "w@x.org");
        assert_eq!(out.ignored.attributes, ["emails.label"]);
        // A member's sub-attributes are not for changing.
        let e = run(
            Kind::Group,
            json!({"displayName": "G"}),
            json!([{"op": "replace", "path": "members[value eq \"U1\"].value", "value": "U2"}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::Mutability));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn email() -> impl Strategy<Value = String> {
            "[a-z]{1,8}@[a-z]{1,6}\\.(com|org)"
        }

        fn user_body() -> impl Strategy<Value = Value> {
            (
                "[a-z]{1,10}",
                proptest::collection::vec((email(), prop_oneof!["work", "home", "other"]), 0..4),
                proptest::option::of("[A-Za-z ]{1,12}"),
            )
                .prop_map(|(u, emails, title)| {
                    let mut b = json!({"userName": u});
                    // A stored user has each type once.
                    let mut types = Vec::new();
                    let list: Vec<Value> = emails
                        .into_iter()
                        .filter(|(_, t)| {
                            let fresh = !types.contains(t);
                            types.push(t.clone());
                            fresh
                        })
                        .map(|(v, t)| json!({"value": v, "type": t}))
                        .collect();
                    if !list.is_empty() {
                        b["emails"] = Value::Array(list);
                    }
                    if let Some(t) = title {
                        b["title"] = json!(t);
                    }
                    b
                })
        }

        fn patch(b: &Body, ops: Value) -> ScimResult<Outcome> {
            apply(
                Kind::User,
                "ID1",
                b,
                &parse_request(&json!({"Operations": ops}))?,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn add_then_remove_an_email_restores_the_user(b in user_body(), e in email()) {
                let start = body(b);
                let present = start.get("emails").and_then(Value::as_array)
                    .is_some_and(|l| l.iter().any(|x| x["value"] == e.as_str()));
                prop_assume!(!present);
                let added = patch(&start, json!([{"op": "add", "path": "emails", "value": [{"value": e}]}])).unwrap();
                prop_assert_ne!(&added.body, &start);
                let back = patch(&added.body, json!([{"op": "remove", "path": format!("emails[value eq \"{e}\"]")}])).unwrap();
                prop_assert_eq!(back.body, start);
            }

            #[test]
            fn replacing_with_current_values_changes_nothing(b in user_body()) {
                let start = body(b);
                let mut ops = Vec::new();
                for (k, v) in &start {
                    ops.push(json!({"op": "replace", "path": k, "value": v}));
                }
                ops.push(json!({"op": "replace", "value": Value::Object(start.clone())}));
                let out = patch(&start, Value::Array(ops)).unwrap();
                prop_assert_eq!(out.body, start);
            }

            #[test]
            fn a_failing_last_op_never_leaks_earlier_ones(b in user_body(), t in "[a-z]{1,8}") {
                let start = body(b);
                let r = patch(&start, json!([{"op": "replace", "path": "title", "value": t},
                    {"op": "replace", "path": "active", "value": "perhaps"}]));
                prop_assert!(r.is_err());
            }
        }
    }
}
