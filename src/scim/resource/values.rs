//! One attribute's value in canonical form: the JSON type its definition asks for, booleans
//! and numbers read from strings, base64 checked, `null` and `""` read as absent.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::checks::is_reference;
use super::multi_valued::{carries_data, check_count, fix_primary, push_once};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{AttrDef, AttrType};

/// Normalise the value of a whole attribute. `None` means "absent" (null, empty string,
/// empty list or object).
pub fn normalize_attr(def: &'static AttrDef, value: &Value) -> ScimResult<Option<Value>> {
    normalize_attr_with(def, value, false)
}

/// As `normalize_attr`, keeping entries that hold only `type`, `primary` or `display`: a
/// PATCH operation in the middle of a request creates one that a later operation fills.
pub fn normalize_attr_keeping_hollow(
    def: &'static AttrDef,
    value: &Value,
) -> ScimResult<Option<Value>> {
    normalize_attr_with(def, value, true)
}

fn normalize_attr_with(
    def: &'static AttrDef,
    value: &Value,
    keep_hollow: bool,
) -> ScimResult<Option<Value>> {
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
                if keep_hollow || !def.is_complex() || carries_data(&v) {
                    push_once(def, &mut out, &mut seen, v);
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
        // The manager in a list of one (Entra's older form, idp-notes §3.6): that one.
        Value::Array(one) if !def.multi_valued && one.len() == 1 && one[0].is_object() => {
            return normalize_single(def, &one[0]);
        }
        // A template's unset parameter (`""`, or blanks as OneLogin's `" "`): absent, as the
        // manager's blank id is.
        Value::String(s) if s.trim().is_empty() => return Ok(None),
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

/// 2^53: the largest magnitude below which a double holds every whole number exactly.
pub const EXACT_IN_A_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// An integer past what a double holds exactly.
fn past_exact(label: &str, n: &serde_json::Number) -> ScimError {
    ScimError::invalid_value(format!(
        "attribute \"{label}\" must be an integer from -2^53 to 2^53 \
         (9007199254740992), got {n}: past it, the doubles most JSON libraries hold numbers \
         in cannot tell it from its neighbours"
    ))
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
        // Within ±2^53 (I-JSON, RFC 7493 §2.2): past it, the doubles most JSON libraries
        // (and every JavaScript console) hold numbers in would round it to another.
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            match n
                .as_i64()
                .filter(|i| i.unsigned_abs() <= EXACT_IN_A_DOUBLE as u64)
            {
                Some(_) => Ok(Some(value.clone())),
                None => Err(past_exact(label, n)),
            }
        }
        // A whole number written as a float (`5.0`: JSON libraries that hold every number
        // as a double write them so) is that integer.
        // Only up to 2^53, where a double still holds every whole number exactly.
        (AttrType::Integer, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT_IN_A_DOUBLE => {
                Ok(Some(Value::from(f as i64)))
            }
            Some(f) if f.fract() == 0.0 => Err(past_exact(label, n)),
            _ => Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must be an integer, got {n}, which is not a whole number"
            ))),
        },
        (AttrType::Integer, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) if i.unsigned_abs() <= EXACT_IN_A_DOUBLE as u64 => Ok(Some(Value::from(i))),
            Ok(i) => Err(past_exact(label, &i.into())),
            Err(_) => Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must be an integer, got the string {s:?}, which is not one"
            ))),
        },
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
            match crate::scim::datetime::parse(s) {
                Some(_) => Ok(Some(value.clone())),
                None => Err(ScimError::invalid_value(format!(
                    "attribute \"{label}\" must be a date and a time (xsd:dateTime, RFC 7643 \
                     §2.3.5) such as 2024-05-01T12:00:00Z (without a zone, UTC is meant), \
                     got \"{s}\""
                ))),
            }
        }
        (AttrType::DateTime, _) => Err(bad("a date-time string")),
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
        // A name or address is shown, logged and compared by every application reading the
        // directory: a line break or an escape sequence in one is a forgery waiting to be
        // printed, and no IdP sends one. (`addresses.formatted` may hold line breaks.)
        (AttrType::String, Value::String(s))
            if refuses_controls(label) && s.chars().any(char::is_control) =>
        {
            Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" must not contain control characters (a line break, a \
                 tab, an escape)"
            )))
        }
        // A login name is matched by eye as much as by code: characters that show nothing
        // (a zero-width space, a soft hyphen, a byte-order mark) or turn the text around
        // (bidi overrides) let two accounts look alike. ZWJ and ZWNJ stay: scripts need them.
        (AttrType::String, Value::String(s)) if label == "userName" && s.chars().any(invisible) => {
            let c = s.chars().find(|c| invisible(*c)).unwrap_or_default();
            Err(ScimError::invalid_value(format!(
                "attribute \"userName\" must not contain U+{:04X}, a character that shows \
                 nothing or reorders the text (zero-width spaces, soft hyphens, bidi \
                 controls, line separators)",
                u32::from(c)
            )))
        }
        (AttrType::String, Value::String(s))
            if s.len() > MAX_KEY_CHARS
                && is_lookup_key(label)
                && s.chars().count() > MAX_KEY_CHARS =>
        {
            Err(ScimError::invalid_value(format!(
                "attribute \"{label}\" is {} characters long; at most {MAX_KEY_CHARS} are \
                 accepted, so that a filter can still find it",
                s.chars().count()
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

/// Longest value, in characters, of an attribute IdPs find resources by before they write
/// (`userName eq`, `displayName eq`, `externalId eq`, `emails[value eq]`). A longer one could
/// be stored but never looked up: its filter would pass `server.max_filter_length`'s default
/// of 8,192 bytes (1,024 characters of four bytes, escaped, stay under it).
pub const MAX_KEY_CHARS: usize = 1024;

fn is_lookup_key(label: &str) -> bool {
    matches!(
        label,
        "userName" | "displayName" | "externalId" | "emails.value"
    )
}

/// Whether attribute `label` (`emails.value` for a sub-attribute) refuses control
/// characters: names and addresses every application shows, logs and compares.
pub fn refuses_controls(label: &str) -> bool {
    matches!(
        label,
        "userName" | "displayName" | "emails.value" | "members.display" | "groups.display"
    )
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

/// Characters that show nothing or reorder the text around them, refused in a userName:
/// Unicode's default-ignorable code points but the joiners (U+200C, U+200D), the line and
/// paragraph separators, and the blanks that render as nothing (Hangul fillers, Braille
/// blank).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use crate::scim::error::ScimType;
    use crate::scim::resource::normalize;
    use crate::scim::schema::Kind;
    use serde_json::json;

    #[test]
    fn a_user_name_with_an_invisible_or_reordering_character_is_refused() {
        for name in [
            "bob\u{200B}",
            "x\u{00AD}",
            "\u{FEFF}eve",
            "gpj.\u{202E}exe",
            "a\u{2028}b",
            "bob\u{E0041}x",
            "\u{3164}",
            "a\u{FE0F}",
        ] {
            let err = normalize(Kind::User, &json!({"userName": name})).unwrap_err();
            assert_eq!(err.scim_type, Some(ScimType::InvalidValue), "{name:?}");
            assert!(err.detail.contains("shows nothing"), "{}", err.detail);
        }
        // Scripts that need joiners, and other names, pass; so does a display name.
        for name in ["می\u{200C}خواهم", "ｂｏｂ", "Zoë"] {
            assert!(
                normalize(Kind::User, &json!({"userName": name})).is_ok(),
                "{name:?}"
            );
        }
        let named = json!({"userName": "a", "displayName": "x\u{200F}y"});
        assert!(normalize(Kind::User, &named).is_ok());
    }

    #[test]
    fn a_lookup_key_past_the_longest_a_filter_finds_is_refused() {
        use super::MAX_KEY_CHARS;
        // Characters, not bytes: 1,024 of three bytes each pass.
        let most = "é".repeat(MAX_KEY_CHARS);
        let over = "a".repeat(MAX_KEY_CHARS + 1);
        let user = |k: &str, v: &str| {
            let mut b = json!({"userName": "u"});
            b[k] = json!(v);
            normalize(Kind::User, &b)
        };
        for key in ["userName", "externalId", "displayName"] {
            assert_eq!(user(key, &most).unwrap().body[key], json!(most), "{key}");
            let e = user(key, &over).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{key}");
            assert_eq!(
                e.detail,
                format!(
                    "attribute \"{key}\" is 1025 characters long; at most 1024 are accepted, \
                     so that a filter can still find it"
                )
            );
        }
        let email = |v: &str| {
            normalize(
                Kind::User,
                &json!({"userName": "u", "emails": [{"value": v}]}),
            )
        };
        assert!(email(&most).is_ok());
        assert!(
            email(&over)
                .unwrap_err()
                .detail
                .contains("\"emails.value\"")
        );
        let group = |v: &str| normalize(Kind::Group, &json!({"displayName": v}));
        assert!(group(&most).is_ok());
        assert_eq!(
            group(&over).unwrap_err().scim_type,
            Some(ScimType::InvalidValue)
        );
        // Attributes nobody looks up by are not held to it.
        assert!(user("title", &over).is_ok());
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
}
