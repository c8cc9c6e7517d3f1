//! What must hold of a body after every write: references that name something, required
//! attributes present, immutable ones unchanged.

use serde_json::{Map, Value};

use super::compare::same_values;
use super::{Body, container_mut};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{AttrDef, AttrRef, Mutability, Rt};

/// A single complex attribute with a `value` (the manager) refers to another resource.
pub fn is_reference(def: &AttrDef) -> bool {
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

/// Whether `body` holds `name`: a core attribute (`urn` None), or one of extension `urn`.
pub fn holds(body: &Body, urn: Option<&str>, name: &str) -> bool {
    match urn {
        None => body.contains_key(name),
        Some(urn) => {
            (body.get(urn).and_then(Value::as_object)).is_some_and(|m| m.contains_key(name))
        }
    }
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
    let has = |b: &Body, urn: &str, name: &str| holds(b, Some(urn), name);
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
