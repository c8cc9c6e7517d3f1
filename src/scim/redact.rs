//! A request body as one log line with its secrets withheld, for a tenant whose admin asked
//! to see what its IdP sends (`log_bodies`): the shape and the values of every attribute,
//! never a password, nor an attribute the tenant's schema never shows.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::scim::schema::{AttrDef, Mutability, Returned, Rt};

/// What stands in for a withheld value.
const WITHHELD: &str = "(withheld)";

/// A name whose value is never logged: the password (RFC 7643 §4.1.1, also under its URN or
/// in a dotted path), and a tenant's own attribute named like a secret.
pub fn names_a_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|w| lower.contains(w))
}

/// The names of the attributes (and sub-attributes) of `types` that are never shown:
/// `writeOnly` or `returned: never`, such as a tenant's own secret extension values (an
/// `ssn`, an `apiKey`), whose names need not sound like a secret.
pub fn hidden_names(types: &[Rt]) -> Vec<&'static str> {
    fn walk(attrs: &'static [AttrDef], out: &mut Vec<&'static str>) {
        for a in attrs {
            if a.mutability == Mutability::WriteOnly || a.returned == Returned::Never {
                out.push(a.name);
            }
            walk(a.sub_attributes, out);
        }
    }
    let mut out = Vec::new();
    for t in types {
        walk(t.kind.schema().attributes, &mut out);
        for ext in t.ext {
            walk(ext.attributes, &mut out);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `text` (a key, a PATCH path, a filter, a URL) names a secret: as
/// `names_a_secret`, or one of `hidden` as one of its names (`ssn`, `urn:x:ssn`,
/// `ssn eq "…"`).
pub fn names_hidden(text: &str, hidden: &[&str]) -> bool {
    names_a_secret(text)
        || (!hidden.is_empty()
            && text
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .any(|word| hidden.iter().any(|h| h.eq_ignore_ascii_case(word))))
}

/// `body` as compact JSON with every secret withheld (those `names_hidden` finds with
/// `hidden`), at most `limit` bytes of it (then "… (cut)"). Written as it is walked, and the
/// walk stops at the limit: a million-member PATCH costs `limit` bytes, not a copy of itself.
pub fn for_log(body: &Value, limit: usize, hidden: &[&str]) -> String {
    let mut out = Bounded {
        bytes: Vec::new(),
        limit,
        written: 0,
    };
    // The writer refuses past the limit; the error only means "cut".
    let _ = serde_json::to_writer(&mut out, &Redacted(body, hidden));
    if out.written <= limit {
        return String::from_utf8(out.bytes).unwrap_or_default();
    }
    let mut text = String::from_utf8_lossy(&out.bytes).into_owned();
    // The cut may fall inside a character; lossy decoding marks it, which is dropped.
    if text.ends_with('\u{fffd}') {
        text.pop();
    }
    text + "… (cut)"
}

/// Serializes a JSON value with secrets withheld (and those named in the list).
struct Redacted<'a>(&'a Value, &'a [&'a str]);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let secret = |text: &str| names_hidden(text, self.1);
        match self.0 {
            Value::Object(map) => {
                // A PATCH operation whose path names a secret carries it as its `value`.
                let secret_path = map
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("path") && v.as_str().is_some_and(secret));
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_key(k)?;
                    // A `.search` filter naming a secret may compare it with its value, as
                    // a URL's query naming one is logged without the query.
                    // So may a PATCH path's value filter (`pins[value eq "1234"]`).
                    let secret_filter = (k.eq_ignore_ascii_case("filter")
                        || (k.eq_ignore_ascii_case("path")
                            && v.as_str().is_some_and(|p| p.contains('['))))
                        && v.as_str().is_some_and(secret);
                    if secret(k)
                        || secret_filter
                        || (secret_path && k.eq_ignore_ascii_case("value"))
                    {
                        m.serialize_value(WITHHELD)?;
                    } else {
                        m.serialize_value(&Redacted(v, self.1))?;
                    }
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Redacted(item, self.1))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Keeps the first `limit` bytes written and refuses the rest.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
    /// All that was offered, kept or not.
    written: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&buf[..buf.len().min(room)]);
        self.written += buf.len();
        if buf.len() > room {
            return Err(std::io::Error::other("the log's limit is reached"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_are_withheld_wherever_they_are() {
        let body = json!({
            "userName": "ann@x", "PassWord": "hunter2",
            "urn:ietf:params:scim:schemas:core:2.0:User:password": "hunter3",
            "name": {"givenName": "Ann"},
            "emails": [{"value": "ann@x", "primary": true}],
            "urn:example:acme:User": {"apiSecret": "s3", "shoeSize": 42},
        });
        let logged = for_log(&body, 10_000, &[]);
        for secret in ["hunter2", "hunter3", "s3\""] {
            assert!(!logged.contains(secret), "{logged}");
        }
        let back: Value = serde_json::from_str(&logged).unwrap();
        assert_eq!(back["PassWord"], WITHHELD);
        assert_eq!(back["name"]["givenName"], "Ann");
        assert_eq!(back["emails"][0]["primary"], true);
        assert_eq!(back["urn:example:acme:User"]["shoeSize"], 42);
    }

    #[test]
    fn attributes_never_shown_are_withheld_by_key_path_and_filter() {
        let hidden = ["ssn"];
        let body = json!({"Operations": [
            {"op": "replace", "path": "urn:example:hr:2.0:User:SSN", "value": "078-05"},
            {"op": "add", "value": {"urn:example:hr:2.0:User": {"ssn": "078-06"}}},
            {"op": "remove", "path": "badges[ssn eq \"078-08\"]"},
        ], "filter": "ssn eq \"078-07\"", "lessons": "kept"});
        let logged = for_log(&body, 10_000, &hidden);
        // The plain path stays: which attribute changed is no secret.
        assert!(logged.contains("urn:example:hr:2.0:User:SSN"), "{logged}");
        for secret in ["078-05", "078-06", "078-07", "078-08"] {
            assert!(!logged.contains(secret), "{logged}");
        }
        // A name that only contains the hidden one is not it.
        assert!(logged.contains("kept"), "{logged}");
        assert!(!names_hidden("/Users?filter=lessons pr", &hidden));
        assert!(names_hidden(
            "/Users?filter=title eq \"x\" or SSN pr",
            &hidden
        ));
    }

    #[test]
    fn a_patch_naming_the_password_by_path_has_its_value_withheld() {
        let body = json!({"Operations": [
            {"op": "replace", "path": "password", "value": "hunter2"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:PASSWORD", "value": "hunter3"},
            {"op": "replace", "value": {"password": "hunter4", "active": false}},
            {"op": "add", "path": "members", "value": [{"value": "u1"}]},
        ]});
        let logged = for_log(&body, 10_000, &[]);
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!logged.contains(secret), "{logged}");
        }
        let back: Value = serde_json::from_str(&logged).unwrap();
        assert_eq!(back["Operations"][2]["value"]["active"], false);
        assert_eq!(back["Operations"][3]["value"][0]["value"], "u1");
    }

    #[test]
    fn a_search_filter_naming_a_secret_is_withheld() {
        let body = json!({"filter": "password eq \"hunter2\"", "count": 5});
        let back: Value = serde_json::from_str(&for_log(&body, 10_000, &[])).unwrap();
        assert_eq!(back, json!({"filter": WITHHELD, "count": 5}));
        let plain = json!({"filter": "userName eq \"ann@x\""});
        assert_eq!(for_log(&plain, 10_000, &[]), plain.to_string());
    }

    #[test]
    fn a_long_body_is_cut_with_its_length() {
        let members: Vec<Value> = (0..1000)
            .map(|i| json!({"value": format!("é{i}")}))
            .collect();
        let body = json!({"members": members});
        let logged = for_log(&body, 100, &[]);
        assert!(logged.ends_with("… (cut)"), "{logged}");
        let cut = logged.split('…').next().unwrap();
        assert!(cut.len() <= 100 && cut.len() >= 97, "{}", cut.len());
        assert!(!cut.contains('\u{fffd}'));
        assert_eq!(for_log(&json!({"a": 1}), 7, &[]), "{\"a\":1}");
    }
}
