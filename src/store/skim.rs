//! Reading only the attributes a scan asks about out of a stored record.
//!
//! A filter no index answers, or a sort, reads every record of the tenant. Decoding a whole
//! record builds, and hashes into an ordered map, every attribute it holds, while the filter
//! reads one or two of them. Here the others are stepped over unparsed.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// What a scan needs of one stored record.
pub(super) struct Skimmed {
    /// Only the wanted top-level attributes that the record holds.
    pub(super) body: Map<String, Value>,
    pub(super) created: String,
    pub(super) modified: String,
    pub(super) version: u64,
}

/// The record in `bytes` (as `record::encode` writes it) with only the top-level attributes in
/// `wanted` (core names, or extension URNs) parsed, and its times only if `meta` is wanted;
/// `None` if it does not decode.
pub(super) fn skim(bytes: &[u8], wanted: &[&str]) -> Option<Skimmed> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = RecordSeed(wanted).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// `skim` for a scan: a record that does not decode is damage, redb's error for it (a 500
/// and a check of the file, as for any read), not a record that fails the filter.
pub(super) fn skimmed(bytes: &[u8], wanted: &[&str]) -> Result<Skimmed, redb::Error> {
    skim(bytes, wanted).ok_or_else(|| {
        redb::Error::Corrupted(
            super::record::undecodable(bytes)
                .unwrap_or_else(|| "a stored record does not parse".into()),
        )
    })
}

const FIELDS: &[&str] = &["body", "created", "modified", "version"];

/// A map key, matched against a list without keeping a copy of it.
struct KeyIn<'w>(&'w [&'w str]);

impl<'de, 'w> DeserializeSeed<'de> for KeyIn<'w> {
    type Value = Option<&'w str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'w> Visitor<'de> for KeyIn<'w> {
    type Value = Option<&'w str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute name")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|w| **w == s).copied())
    }
}

struct RecordSeed<'w>(&'w [&'w str]);

impl<'de, 'w> DeserializeSeed<'de> for RecordSeed<'w> {
    type Value = Skimmed;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Skimmed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'w> Visitor<'de> for RecordSeed<'w> {
    type Value = Skimmed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skimmed, A::Error> {
        let mut out = Skimmed {
            body: Map::new(),
            created: String::new(),
            modified: String::new(),
            version: 0,
        };
        let times = self.0.contains(&"meta");
        let mut seen = [false; 4];
        while let Some(field) = map.next_key_seed(KeyIn(FIELDS))? {
            match field {
                Some("body") => out.body = map.next_value_seed(BodySeed(self.0))?,
                // The times are only read by a filter or sort on `meta`.
                Some("created") if times => out.created = map.next_value()?,
                Some("modified") if times => out.modified = map.next_value()?,
                Some("created" | "modified") => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some("version") => out.version = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            }
            if let Some(i) = FIELDS.iter().position(|f| Some(*f) == field) {
                seen[i] = true;
            }
        }
        // As strict as the full decode: a record missing a field is not a record.
        match seen.iter().all(|s| *s) {
            true => Ok(out),
            false => Err(serde::de::Error::custom("a stored record lacks a field")),
        }
    }
}

struct BodySeed<'w>(&'w [&'w str]);

impl<'de, 'w> DeserializeSeed<'de> for BodySeed<'w> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'w> Visitor<'de> for BodySeed<'w> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a resource body")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut body = Map::new();
        while let Some(key) = map.next_key_seed(KeyIn(self.0))? {
            match key {
                Some(name) => {
                    body.insert(name.to_string(), map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(body: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"body": body, "created": "2026-01-02T03:04:05Z",
            "modified": "2026-01-03T03:04:05Z", "version": 7}))
        .unwrap()
    }

    #[test]
    fn keeps_exactly_the_wanted_attributes_as_a_full_decode_reads_them() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let body = json!({
            "userName": "a\"b@x.example",
            "name": {"givenName": "Ä", "familyName": "Quote \" and \\ and \u{1F600}"},
            "emails": [{"value": "a@x.example", "primary": true}],
            "title": null,
            "esc\"aped": [1, 2.5, {"deep": [true, false]}],
            ext: {"department": "R&D", "manager": {"value": "m"}},
        });
        let bytes = stored(body.clone());
        let wanted = ["name", "title", ext, "absent", "meta"];
        let s = skim(&bytes, &wanted).unwrap();
        let mut expected = Map::new();
        for k in ["name", "title", ext] {
            expected.insert(k.to_string(), body[k].clone());
        }
        assert_eq!(s.body, expected);
        assert_eq!(s.created, "2026-01-02T03:04:05Z");
        assert_eq!(s.modified, "2026-01-03T03:04:05Z");
        assert_eq!(s.version, 7);
        let bare = skim(&bytes, &[]).unwrap();
        assert!(bare.body.is_empty());
        assert_eq!(
            (bare.created.as_str(), bare.version),
            ("", 7),
            "times only for meta"
        );
    }

    #[test]
    fn refuses_what_the_full_decode_refuses() {
        assert!(
            skim(b"{\"body\":{}}", &["userName"]).is_none(),
            "missing fields"
        );
        assert!(
            skim(b"{\"body\":{\"userName\":", &["userName"]).is_none(),
            "cut short"
        );
        let mut trailing = stored(json!({"userName": "a"}));
        trailing.extend_from_slice(b" x");
        assert!(skim(&trailing, &["userName"]).is_none(), "trailing bytes");
        assert!(skim(b"[1,2]", &["userName"]).is_none(), "not an object");
    }
}
