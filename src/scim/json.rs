//! Reading request bodies strictly. serde_json keeps the last of two equal keys; SCIM names
//! are case-insensitive, so `userName` and `USERNAME` in one object are the same attribute
//! too. Either way the client's intent is ambiguous, and silently picking one could store
//! the value it did not mean: refuse such a body instead. `ArrayItems` splits checked
//! JSON text of an array into its elements, for arrays too large to hold as one tree.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parse `bytes` as one JSON value, refusing objects that name a key twice (ignoring case).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(n.into())
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(n.into())
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.to_lowercase()) {
                let first = out
                    .keys()
                    .find(|o: &&String| o.to_lowercase() == k.to_lowercase())
                    .cloned()
                    .unwrap_or_default();
                return Err(de::Error::custom(if first == k {
                    format!("the key \"{k}\" appears twice in one object")
                } else {
                    format!(
                        "the keys \"{first}\" and \"{k}\" name the same attribute (SCIM names \
                         ignore case)"
                    )
                }));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// The elements of a JSON array as text, one at a time, from the text of a JSON value
/// serde_json has already checked: a reader takes a huge array (a group's million members)
/// a few elements at a time instead of as one tree.
pub struct ArrayItems<'a> {
    text: &'a str,
    at: usize,
    done: bool,
}

impl<'a> ArrayItems<'a> {
    /// `None` when `text` is not an array.
    pub fn new(text: &'a str) -> Option<ArrayItems<'a>> {
        let rest = text.trim_start().strip_prefix('[')?;
        Some(ArrayItems {
            text,
            at: text.len() - rest.len(),
            done: false,
        })
    }
}

impl<'a> Iterator for ArrayItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let start = self.at;
        // Brackets and commas count only outside strings, and a quote escaped inside one
        // does not end it.
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for (i, &c) in self.text.as_bytes().iter().enumerate().skip(start) {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => depth -= 1,
                b']' => {
                    self.done = true;
                    let item = self.text[start..i].trim();
                    return (!item.is_empty()).then_some(item);
                }
                b',' if depth == 0 => {
                    self.at = i + 1;
                    return Some(self.text[start..i].trim());
                }
                _ => {}
            }
        }
        self.done = true;
        None
    }
}

/// An object's members in the order written, each value as its JSON text.
pub(crate) struct Fields<'a>(pub(crate) Vec<(Key<'a>, &'a serde_json::value::RawValue)>);

/// A member's name, borrowed from the text unless it holds a JSON escape.
pub(crate) struct Key<'a>(pub(crate) std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Fields<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(e) = m.next_entry()? {
                    out.push(e);
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        let text = r#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{"c":{}},"d":18446744073709551615}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn refuses_repeated_keys_in_any_case_at_any_depth() {
        let e = parse(br#"{"userName":"a","userName":"b"}"#).unwrap_err();
        assert!(e.contains("\"userName\" appears twice"), "{e}");
        let e = parse(br#"{"name":{"givenName":"a","GIVENNAME":"b"}}"#).unwrap_err();
        assert!(e.contains("\"givenName\" and \"GIVENNAME\""), "{e}");
        assert!(parse(br#"[{"value":"a"},{"value":"b"}]"#).is_ok());
    }

    #[test]
    fn refuses_trailing_data_and_deep_nesting() {
        assert!(parse(b"{} {}").is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn array_items_are_the_elements_as_written() {
        let text = r#" [ {"value": "a,b", "display": "x]\\\"}{"}, [1, [2]] ,"c\\\\", null,{} ] "#;
        let items: Vec<&str> = ArrayItems::new(text).unwrap().collect();
        assert_eq!(
            items,
            [
                r#"{"value": "a,b", "display": "x]\\\"}{"}"#,
                "[1, [2]]",
                r#""c\\\\""#,
                "null",
                "{}"
            ]
        );
        // Each is the JSON value serde_json reads in the whole.
        let whole: Value = serde_json::from_str(text).unwrap();
        let each: Vec<Value> = items
            .iter()
            .map(|i| serde_json::from_str(i).unwrap())
            .collect();
        assert_eq!(Value::Array(each), whole);
        assert_eq!(ArrayItems::new("[]").unwrap().count(), 0);
        assert_eq!(ArrayItems::new(" [ ] ").unwrap().count(), 0);
        assert!(ArrayItems::new(r#"{"value": "a"}"#).is_none());
        assert!(ArrayItems::new("null").is_none());
    }
}
