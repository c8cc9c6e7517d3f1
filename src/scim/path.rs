//! PATCH attribute paths (RFC 7644 §3.5.2): `attr`, `attr.sub`, `urn:...:attr`,
//! `attr[filter]` and `attr[filter].sub`. Pure parsing against the schema.

use super::error::{ScimError, ScimResult};
use super::filter::{self, Filter};
use super::schema::{AttrDef, AttrRef, Rt, resolve, split_urn};

pub const MAX_PATH_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct Path {
    pub attr: AttrRef,
    /// The value filter in brackets; only on multi-valued complex attributes.
    pub filter: Option<Filter>,
    pub sub: Option<&'static AttrDef>,
}

#[derive(Debug, Clone)]
pub enum Parsed {
    Known(Path),
    /// Names an attribute this server does not have: IdP mappings often carry such paths, and
    /// the policy is to ignore and log them rather than fail the whole request.
    Unknown(String),
}

pub fn parse(kind: impl Into<Rt>, raw: &str) -> ScimResult<Parsed> {
    let kind: Rt = kind.into();
    let s = raw.trim();
    if s.is_empty() {
        return Err(ScimError::invalid_path("the PATCH path is empty"));
    }
    if s.len() > MAX_PATH_LEN {
        return Err(ScimError::invalid_path(format!(
            "the PATCH path is longer than {MAX_PATH_LEN} characters"
        )));
    }
    let head_end = s.find('[').unwrap_or(s.len());
    let (urn, head) = split_urn(kind, &s[..head_end]);
    let after = &s[head_end..];
    let (name, mut sub_name) = match head.split_once('.') {
        Some((n, sub)) => (n, Some(sub)),
        None => (head, None),
    };
    if name.is_empty() || !valid_name(name) {
        return Err(ScimError::invalid_path(format!(
            "\"{raw}\" is not a valid attribute path"
        )));
    }
    let mut filter_text = None;
    if let Some(rest) = after.strip_prefix('[') {
        if sub_name.is_some() {
            return Err(ScimError::invalid_path(format!(
                "\"{raw}\": a value filter must follow the attribute name directly"
            )));
        }
        let close = closing_bracket(rest).ok_or_else(|| {
            ScimError::invalid_path(format!("\"{raw}\": the value filter has no closing ']'"))
        })?;
        filter_text = Some(&rest[..close]);
        let tail = &rest[close + 1..];
        if !tail.is_empty() {
            let Some(sub) = tail.strip_prefix('.') else {
                return Err(ScimError::invalid_path(format!(
                    "\"{raw}\": unexpected \"{tail}\" after the value filter"
                )));
            };
            sub_name = Some(sub);
        }
    }
    if let Some(sub) = sub_name
        && (sub.is_empty() || !valid_name(sub))
    {
        return Err(ScimError::invalid_path(format!(
            "\"{raw}\" is not a valid attribute path"
        )));
    }
    let Some(attr) = resolve(kind, urn, name) else {
        return Ok(Parsed::Unknown(s.to_string()));
    };
    let sub = match sub_name {
        None => None,
        Some(n) => {
            if !attr.def.is_complex() {
                return Err(ScimError::invalid_path(format!(
                    "\"{raw}\": \"{}\" has no sub-attributes",
                    attr.def.name
                )));
            }
            match attr.def.sub(n) {
                Some(d) => Some(d),
                None => return Ok(Parsed::Unknown(s.to_string())),
            }
        }
    };
    let filter = match filter_text {
        None => None,
        Some(text) => {
            if !(attr.def.multi_valued && attr.def.is_complex()) {
                return Err(ScimError::invalid_path(format!(
                    "\"{raw}\": a value filter needs a multi-valued complex attribute, and \"{}\" is not one",
                    attr.def.name
                )));
            }
            let f = filter::parse_element_filter(attr.def, text)
                .map_err(|e| ScimError::invalid_path(format!("\"{raw}\": {}", e.detail)))?;
            Some(f)
        }
    };
    Ok(Parsed::Known(Path { attr, filter, sub }))
}

fn valid_name(n: &str) -> bool {
    n == "$ref"
        || (n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

/// Index of the `]` closing a value filter, skipping brackets inside quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_str => escaped = true,
            '"' => in_str = !in_str,
            ']' if !in_str => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind};

    fn known(kind: Kind, s: &str) -> Path {
        match parse(kind, s).unwrap() {
            Parsed::Known(p) => p,
            Parsed::Unknown(u) => panic!("unknown {u}"),
        }
    }

    #[test]
    fn parses_every_shape() {
        let p = known(Kind::User, "userName");
        assert_eq!(p.attr.def.name, "userName");
        let p = known(Kind::User, "NAME.givenname");
        assert_eq!(
            (p.attr.def.name, p.sub.unwrap().name),
            ("name", "givenName")
        );
        let p = known(Kind::User, "emails[type eq \"work\"].value");
        assert!(p.filter.is_some());
        assert_eq!(p.sub.unwrap().name, "value");
        let p = known(Kind::Group, "members[value eq \"a]b\"]");
        assert!(p.filter.is_some() && p.sub.is_none());
        let p = known(Kind::User, &format!("{ENTERPRISE_SCHEMA}:manager"));
        assert_eq!(p.attr.ext, Some(ENTERPRISE_SCHEMA));
        let p = known(
            Kind::User,
            "urn:ietf:params:scim:schemas:core:2.0:User:displayName",
        );
        assert!(p.attr.ext.is_none());
    }

    #[test]
    fn unknown_attributes_are_reported_not_fatal() {
        assert!(matches!(
            parse(Kind::User, "foo").unwrap(),
            Parsed::Unknown(_)
        ));
        assert!(matches!(
            parse(Kind::User, "urn:acme:ext:2.0:User:shoeSize").unwrap(),
            Parsed::Unknown(_)
        ));
    }

    #[test]
    fn malformed_paths_are_invalid_path() {
        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[type eq]",
            "userName.x",
            "userName[value eq \"a\"]",
            "emails[type eq \"work\"]x",
            "1abc",
            "name.",
        ] {
            let e = parse(Kind::User, bad).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(crate::scim::error::ScimType::InvalidPath),
                "{bad}"
            );
        }
    }
}
