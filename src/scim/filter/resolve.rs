//! Resolution against the schema: names checked, and put in their canonical case.

use super::parse::{parse, parse_with};
use super::{AttrPath, CompValue, CompareOp, Filter, Limits};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{
    AttrDef, AttrType, Returned, Rt, SCHEMAS_ATTR, from_the_url, resolve, split_urn,
};

/// What a path's names are resolved against.
#[derive(Clone, Copy)]
pub(super) enum Scope {
    Resource(Rt),
    Element(&'static AttrDef),
}

/// The definitions a resolved path leads to: the attribute and its sub-attribute, if any.
pub(super) fn lookup(
    scope: Scope,
    p: &AttrPath,
) -> Option<(&'static AttrDef, Option<&'static AttrDef>)> {
    let def = match scope {
        Scope::Resource(_) if is_schemas(p) => &SCHEMAS_ATTR,
        Scope::Resource(kind) => resolve(kind, p.urn.as_deref(), &p.name)?.def,
        Scope::Element(parent) => {
            if p.urn.is_some() {
                return None;
            }
            parent.sub(&p.name)?
        }
    };
    let sub = match &p.sub {
        Some(s) => Some(def.sub(s)?),
        None => None,
    };
    Some((def, sub))
}

fn resolve_path(scope: Scope, p: &AttrPath) -> ScimResult<AttrPath> {
    // `…:2.0:User.department`, the dot form Entra once wrote: parsed without the schemas
    // as the URN `…:2.0`, the name `User` and its sub-attribute. A URN the resource knows,
    // followed by an attribute, is what it means (as `split_urn` reads it in a PATCH).
    if let (Scope::Resource(kind), Some(urn), Some(sub)) = (scope, &p.urn, &p.sub) {
        let whole = format!("{urn}:{}", p.name);
        if let (Some(known), "") = split_urn(kind, &whole) {
            let dotted = AttrPath {
                urn: Some(known.to_string()),
                name: sub.clone(),
                sub: None,
            };
            if lookup(scope, &dotted).is_some() {
                return resolve_path(scope, &dotted);
            }
        }
    }
    let unknown = || {
        let full = match (&p.urn, &p.sub) {
            (Some(u), Some(s)) => format!("{u}:{}.{s}", p.name),
            (Some(u), None) => format!("{u}:{}", p.name),
            (None, Some(s)) => format!("{}.{s}", p.name),
            (None, None) => p.name.clone(),
        };
        ScimError::invalid_filter(format!("the filter names an unknown attribute \"{full}\""))
    };
    let (def, sub) = lookup(scope, p).ok_or_else(unknown)?;
    // An attribute never returned (`password`, a secret extension value) is not matched
    // either: a filter on it would let a client test guesses of its value.
    // `leaf`: a complex attribute named alone is compared by its `value`.
    if [Some(def), sub, leaf(def, sub)]
        .into_iter()
        .flatten()
        .any(|d| d.returned == Returned::Never)
    {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is never returned, so it cannot be filtered on",
            p.name
        )));
    }
    // A filter on them would match nothing, silently.
    if let Some(d) = [sub, leaf(def, sub)]
        .into_iter()
        .flatten()
        .find(|d| from_the_url(def, d))
    {
        let instead = if d.name == "$ref" { "value" } else { "id" };
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is made from the request's URL, not stored, so it cannot be filtered on; \
             filter on \"{instead}\" instead",
            d.name
        )));
    }
    let urn = match scope {
        Scope::Resource(kind) => resolve(kind, p.urn.as_deref(), &p.name)
            .and_then(|a| a.ext)
            .map(str::to_string),
        Scope::Element(_) => None,
    };
    Ok(AttrPath {
        urn,
        name: def.name.to_string(),
        sub: sub.map(|s| s.name.to_string()),
    })
}

/// `schemas`, which no schema defines (see `SCHEMAS_ATTR`).
pub(super) fn is_schemas(p: &AttrPath) -> bool {
    p.urn.is_none() && p.name.eq_ignore_ascii_case("schemas")
}

/// The type a comparison on `def`/`sub` compares with.
pub(super) fn leaf(
    def: &'static AttrDef,
    sub: Option<&'static AttrDef>,
) -> Option<&'static AttrDef> {
    match sub {
        Some(s) => Some(s),
        None if def.is_complex() => def.sub("value"),
        None => Some(def),
    }
}

/// An attribute's name as a body's errors give it: `userName`, `emails.value`.
fn label(scope: Scope, def: &AttrDef, leaf: &AttrDef) -> String {
    match scope {
        Scope::Element(parent) => format!("{}.{}", parent.name, def.name),
        Scope::Resource(_) if std::ptr::eq(def, leaf) => def.name.to_string(),
        Scope::Resource(_) => format!("{}.{}", def.name, leaf.name),
    }
}

/// `v` with JSON's one-letter control escapes written back as backslash and letter.
fn written_escapes(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out
}

/// One comparison, resolved and checked. Apart from `resolve_filter`, which recurses once
/// per level of nesting: this arm's many temporaries would otherwise be in every level's
/// frame (256 levels of `not (` overflowed a worker's stack in a debug build).
fn resolve_compare(
    scope: Scope,
    path: &AttrPath,
    op: &CompareOp,
    value: &CompValue,
) -> ScimResult<Filter> {
    let rp = resolve_path(scope, path)?;
    let (def, sub) =
        lookup(scope, &rp).ok_or_else(|| ScimError::invalid_filter("unknown attribute"))?;
    let Some(l) = leaf(def, sub) else {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is a complex attribute; compare one of its sub-attributes",
            def.name
        )));
    };
    let value = match (l.ty, value) {
        // IdPs send booleans as strings; read them as booleans.
        (AttrType::Boolean, CompValue::Str(s)) if s.eq_ignore_ascii_case("true") => {
            CompValue::Bool(true)
        }
        (AttrType::Boolean, CompValue::Str(s)) if s.eq_ignore_ascii_case("false") => {
            CompValue::Bool(false)
        }
        // Unquoted values are read as text (Microsoft's reference collection sends
        // `name.familyName eq Employee`), numbers among them: as a number,
        // `externalId eq 0042` would find no one, and an IdP looking a user up before
        // creating it would create a second one.
        (
            AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime,
            CompValue::Num(_, text),
        ) => CompValue::Str(text.clone()),
        (_, v) => v.clone(),
    };
    // A name never holds a control character: one in the value came from a
    // backslash the client did not mean as JSON's escape (`"CORP\nancy"` from an
    // IdP that escapes only quotes), so it is read back as the two characters sent.
    let value = match value {
        CompValue::Str(v)
            if v.contains(['\n', '\t', '\r', '\u{8}', '\u{c}'])
                && crate::scim::resource::refuses_controls(&label(scope, def, l)) =>
        {
            CompValue::Str(written_escapes(&v))
        }
        v => v,
    };
    if l.ty == AttrType::Boolean && (op.ordering() || op.substring()) {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is a boolean; only eq and ne apply",
            l.name
        )));
    }
    // `active eq flase` would match nothing and read as "no one is deactivated".
    if l.ty == AttrType::Boolean && matches!(value, CompValue::Str(_) | CompValue::Num(..)) {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is a boolean; compare it with true or false, not {value}",
            l.name
        )));
    }
    // `externalId eq true` would match nothing, whatever the IdP meant.
    if matches!(
        l.ty,
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime
    ) && let CompValue::Bool(_) = &value
    {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" holds text; quote the value: {} {} \"{value}\"",
            l.name,
            path,
            op.as_str()
        )));
    }
    // `level eq true` or `level eq "x"` on a number would match nothing, whatever was
    // meant. (A number in quotes, `"4"`, is that number.)
    if matches!(l.ty, AttrType::Integer | AttrType::Decimal)
        && match &value {
            CompValue::Bool(_) => true,
            CompValue::Str(v) => !v.trim().parse::<f64>().is_ok_and(f64::is_finite),
            _ => false,
        }
    {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is a number; compare it with one, not {value}",
            l.name
        )));
    }
    // `level co "1"` would match nothing: the substring operators are for text.
    if matches!(l.ty, AttrType::Integer | AttrType::Decimal) && op.substring() {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is a number; {} applies to text only (use eq, ne, gt, ge, lt or le)",
            l.name,
            op.as_str()
        )));
    }
    // RFC 7644 §3.4.2.2: binary values have no order.
    if l.ty == AttrType::Binary && op.ordering() {
        return Err(ScimError::invalid_filter(format!(
            "\"{}\" is binary (base64) and has no order; gt, ge, lt and le do not apply",
            l.name
        )));
    }
    // A date compared with something that is not one would quietly match nothing.
    if l.ty == AttrType::DateTime
        && !op.substring()
        && let CompValue::Str(v) = &value
        && crate::scim::datetime::parse(v).is_none()
    {
        return Err(ScimError::invalid_filter(format!(
            "\"{v}\" is not a date-time; compare \"{}\" with one such as \"2024-05-01T12:00:00Z\"",
            l.name
        )));
    }
    if op.substring() && !matches!(value, CompValue::Str(_)) {
        return Err(ScimError::invalid_filter(format!(
            "{} needs a string value",
            op.as_str()
        )));
    }
    Ok(Filter::Compare {
        path: rp,
        op: *op,
        value,
    })
}

fn resolve_filter(scope: Scope, f: &Filter) -> ScimResult<Filter> {
    Ok(match f {
        Filter::And(a, b) => Filter::And(
            Box::new(resolve_filter(scope, a)?),
            Box::new(resolve_filter(scope, b)?),
        ),
        Filter::Or(a, b) => Filter::Or(
            Box::new(resolve_filter(scope, a)?),
            Box::new(resolve_filter(scope, b)?),
        ),
        Filter::Not(a) => Filter::Not(Box::new(resolve_filter(scope, a)?)),
        Filter::Present(p) => Filter::Present(resolve_path(scope, p)?),
        Filter::Compare { path, op, value } => resolve_compare(scope, path, op, value)?,
        Filter::ValuePath { path, filter } => {
            if path.sub.is_some() {
                return Err(ScimError::invalid_filter(
                    "a value filter must follow the attribute name",
                ));
            }
            let rp = resolve_path(scope, path)?;
            let (def, _) =
                lookup(scope, &rp).ok_or_else(|| ScimError::invalid_filter("unknown attribute"))?;
            if !def.is_complex() {
                return Err(ScimError::invalid_filter(format!(
                    "\"{}\" has no sub-attributes to filter on",
                    def.name
                )));
            }
            Filter::ValuePath {
                path: rp,
                filter: Box::new(resolve_filter(Scope::Element(def), filter)?),
            }
        }
    })
}

/// Parse and resolve every attribute path against `kind`'s schema, rewriting names to their
/// canonical case (`urn` is kept only for extension attributes).
pub fn parse_for(kind: impl Into<Rt>, input: &str) -> ScimResult<Filter> {
    parse_for_with(kind, input, Limits::default())
}

/// As `parse_for`, within `limits`.
pub fn parse_for_with(kind: impl Into<Rt>, input: &str, limits: Limits) -> ScimResult<Filter> {
    let kind: Rt = kind.into();
    resolve_filter(Scope::Resource(kind), &parse_with(input, limits)?)
}

/// What a root search's filter (`/.search` over every type) asks of one resource type.
#[derive(Debug, Clone, PartialEq)]
pub enum ForType {
    /// Every resource of the type matches.
    All,
    /// None does.
    Nothing,
    Some(Filter),
}

/// Resolve a parsed filter for `kind` in a search over all of `kinds` at once: a condition
/// on an attribute `kind` does not have (`userName` for a Group) is a condition on an absent
/// attribute, decided here as `eval` would decide it. Errors other than unknown top-level
/// attributes are errors.
pub fn resolve_for_type(kind: Rt, kinds: &[Rt], parsed: &Filter) -> ScimResult<ForType> {
    fn prune_in(kind: Rt, kinds: &[Rt], f: &Filter) -> ScimResult<ForType> {
        let prune = |f: &Filter| prune_in(kind, kinds, f);
        let absent =
            |p: &AttrPath| resolve(kind, p.urn.as_deref(), &p.name).is_none() && !is_schemas(p);
        Ok(match f {
            Filter::And(a, b) => match (prune(a)?, prune(b)?) {
                (ForType::Nothing, _) | (_, ForType::Nothing) => ForType::Nothing,
                (ForType::All, x) | (x, ForType::All) => x,
                (ForType::Some(a), ForType::Some(b)) => {
                    ForType::Some(Filter::And(Box::new(a), Box::new(b)))
                }
            },
            Filter::Or(a, b) => match (prune(a)?, prune(b)?) {
                (ForType::All, _) | (_, ForType::All) => ForType::All,
                (ForType::Nothing, x) | (x, ForType::Nothing) => x,
                (ForType::Some(a), ForType::Some(b)) => {
                    ForType::Some(Filter::Or(Box::new(a), Box::new(b)))
                }
            },
            Filter::Not(a) => match prune(a)? {
                ForType::All => ForType::Nothing,
                ForType::Nothing => ForType::All,
                ForType::Some(a) => ForType::Some(Filter::Not(Box::new(a))),
            },
            Filter::Compare { path, op, value } if absent(path) => {
                // As `eval` on a resource without the attribute: only `eq null` holds, and
                // `ne` a value when the attribute is single-valued where it exists (on a
                // multi-valued one, `ne` needs some value that differs). Where it exists is
                // in the tenant's types: its own extensions count.
                let multi_valued = kinds.iter().any(|k| {
                    resolve(*k, path.urn.as_deref(), &path.name).is_some_and(|a| a.def.multi_valued)
                });
                let holds = match op {
                    CompareOp::Ne => *value != CompValue::Null && !multi_valued,
                    CompareOp::Eq => *value == CompValue::Null,
                    _ => false,
                };
                if holds {
                    ForType::All
                } else {
                    ForType::Nothing
                }
            }
            Filter::Present(path) | Filter::ValuePath { path, .. } if absent(path) => {
                ForType::Nothing
            }
            other => ForType::Some(resolve_filter(Scope::Resource(kind), other)?),
        })
    }
    prune_in(kind, kinds, parsed)
}

/// Refuse a root search's filter that names an attribute none of `kinds` has (a typo would
/// otherwise read as "absent" for every type).
pub fn check_known_somewhere(kinds: &[Rt], parsed: &Filter) -> ScimResult<()> {
    fn walk(kinds: &[Rt], f: &Filter) -> ScimResult<()> {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                walk(kinds, a)?;
                walk(kinds, b)
            }
            Filter::Not(a) => walk(kinds, a),
            Filter::Compare { path, .. }
            | Filter::Present(path)
            | Filter::ValuePath { path, .. } => {
                if is_schemas(path)
                    || kinds
                        .iter()
                        .any(|k| resolve(*k, path.urn.as_deref(), &path.name).is_some())
                {
                    Ok(())
                } else {
                    Err(ScimError::invalid_filter(format!(
                        "the filter names \"{}\", which no resource type has",
                        path.name
                    )))
                }
            }
        }
    }
    walk(kinds, parsed)
}

/// Parse a filter relative to one element of the complex attribute `def` (PATCH paths such
/// as `members[value eq "x"]`).
pub fn parse_element_filter(def: &'static AttrDef, input: &str) -> ScimResult<Filter> {
    resolve_filter(Scope::Element(def), &parse(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::filter::tests::{bad, m};
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind, USER_SCHEMA};

    #[test]
    fn a_never_returned_attribute_cannot_be_filtered_on() {
        for f in [
            "password eq \"x\"",
            "password pr",
            "userName pr and not (password sw \"a\")",
        ] {
            let e = parse_for(Kind::User, f).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{f}");
        }
    }

    #[test]
    fn a_known_urn_with_a_dot_is_read_as_with_a_colon() {
        for (dotted, colon) in [
            (
                format!("{ENTERPRISE_SCHEMA}.department eq \"x\""),
                format!("{ENTERPRISE_SCHEMA}:department eq \"x\""),
            ),
            (
                format!("{USER_SCHEMA}.userName pr"),
                "userName pr".to_string(),
            ),
        ] {
            assert_eq!(
                parse_for(Kind::User, &dotted).unwrap(),
                parse_for(Kind::User, &colon).unwrap(),
                "{dotted}"
            );
        }
        // Not a URN the resource knows, nor an attribute of one it does.
        for f in [
            "urn:x:y:User.department eq \"x\"".to_string(),
            format!("{ENTERPRISE_SCHEMA}.nothing eq \"x\""),
        ] {
            let e = parse_for(Kind::User, &f).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{f}");
        }
    }

    #[test]
    fn urns_case_and_case_exactness() {
        assert!(m(&format!(
            "{ENTERPRISE_SCHEMA}:employeeNumber eq \"701984\""
        )));
        assert!(m(&format!(
            "{ENTERPRISE_SCHEMA}:manager.value eq \"26118915\""
        )));
        assert!(m(&format!(
            "{USER_SCHEMA}:userName eq \"bjensen@example.com\""
        )));
        assert!(m("USERNAME EQ \"BJENSEN@EXAMPLE.COM\"") && m("Name.FamilyName Eq \"jensen\""));
        assert!(m("externalId eq \"Ext-1\"") && !m("externalId eq \"ext-1\""));
        assert!(m("id eq \"2819c223\"") && !m("id eq \"2819C223\""));
        let f = parse_for(Kind::User, &format!("{USER_SCHEMA}:USERNAME eq \"x\"")).unwrap();
        assert_eq!(f.to_string(), "userName eq \"x\"");
    }

    #[test]
    fn a_control_escape_in_a_name_is_the_backslash_the_idp_sent() {
        let value = |kind: Kind, text: &str| match parse_for(kind, text).unwrap() {
            Filter::Compare {
                value: CompValue::Str(v),
                ..
            } => v,
            Filter::ValuePath { filter, .. } => match *filter {
                Filter::Compare {
                    value: CompValue::Str(v),
                    ..
                } => v,
                f => panic!("{f:?}"),
            },
            f => panic!("{f:?}"),
        };
        for (kind, text) in [
            (Kind::User, r#"userName eq "CORP\nancy""#),
            (Kind::User, r#"userName sw "CORP\tom""#),
            (Kind::User, r#"emails.value eq "CORP\nancy""#),
            (Kind::User, r#"emails[value eq "CORP\nancy"]"#),
            (Kind::Group, r#"displayName eq "CORP\nancy""#),
            (Kind::Group, r#"members[display eq "CORP\nancy"]"#),
        ] {
            let v = value(kind, text);
            assert!(v.starts_with(r"CORP\"), "{text}: {v:?}");
        }
        // Other attributes may hold a line break: JSON's escape stands.
        assert_eq!(value(Kind::User, r#"title eq "a\nb""#), "a\nb");
    }

    #[test]
    fn unknown_attributes_and_wrong_operators() {
        assert!(bad("shoeSize eq 9").detail.contains("shoeSize"));
        bad("name.shoe eq \"x\"");
        bad("urn:ietf:params:scim:schemas:extension:acme:2.0:User:x eq \"y\"");
        bad("emails[shoe eq \"x\"]");
        bad("active gt true");
        bad("active co \"t\"");
        for typo in [
            "active eq flase",
            "active ne \"nope\"",
            "emails[primary eq 1]",
        ] {
            assert!(bad(typo).detail.contains("true or false"), "{typo}");
        }
        for (unquoted, says) in [
            ("externalId eq true", "externalId eq \"true\""),
            (
                "emails[primary eq true and value eq false]",
                "value eq \"false\"",
            ),
        ] {
            let d = bad(unquoted).detail;
            assert!(d.contains("quote the value") && d.contains(says), "{d}");
        }
        // An unquoted number compared with text is its text, as written.
        for (unquoted, read) in [
            ("userName eq 0042", "userName eq \"0042\""),
            ("externalId eq 1e3", "externalId eq \"1e3\""),
            ("emails[value eq 7]", "emails[value eq \"7\"]"),
        ] {
            assert_eq!(parse_for(Kind::User, unquoted).unwrap().to_string(), read);
        }
        assert!(
            bad("meta.lastModified gt 2024")
                .detail
                .contains("not a date-time")
        );
        for fine in [
            "active eq False",
            "active eq \"TRUE\"",
            "active ne null",
            "userName eq null",
        ] {
            assert!(parse_for(Kind::User, fine).is_ok(), "{fine}");
        }
        assert!(
            bad("x509Certificates.value gt \"A\"")
                .detail
                .contains("no order")
        );
        assert!(parse_for(Kind::User, "x509Certificates.value eq \"QQ==\"").is_ok());
        bad("name eq \"x\"");
        bad("userName[value eq \"x\"]");
        assert!(parse_for(Kind::Group, "userName eq \"x\"").is_err());
        assert!(parse_for(Kind::Group, "members[value eq \"x\"]").is_ok());
        // Made from the request's URL, never stored: refused rather than never matching.
        assert!(bad("meta.location pr").detail.contains("\"id\""));
        assert!(bad("groups.$ref pr").detail.contains("\"value\""));
        assert!(
            bad(&format!("{ENTERPRISE_SCHEMA}:manager.$ref pr"))
                .detail
                .contains("URL")
        );
        assert!(parse_for(Kind::Group, "members.$ref co \"x\"").is_err());
        assert!(parse_for(Kind::Group, "members[$ref co \"x\"]").is_err());
    }
}
