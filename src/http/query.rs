//! Query strings as IdPs send them: `+` for spaces, percent-encoding, empty parts and a
//! trailing `&` ignored, parameter names matched case-insensitively.

use crate::scim::error::{ScimError, ScimResult};

#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> ScimResult<Query> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// The last value of `name` (case-insensitive), if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.get(n).is_some())
    }
}

fn decode(s: &str) -> ScimResult<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            ScimError::invalid_value("the query string is not valid UTF-8 after percent-decoding")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_ignores_empty_parts() {
        let q = Query::parse(Some("filter=userName+eq+%22a%40b.c%22&&startIndex=1&")).unwrap();
        assert_eq!(q.get("FILTER"), Some("userName eq \"a@b.c\""));
        assert_eq!(q.get("startindex"), Some("1"));
        assert!(Query::parse(Some("")).unwrap().get("x").is_none());
        assert!(
            Query::parse(Some("aadOptscim062020"))
                .unwrap()
                .get("aadOptscim062020")
                .is_some()
        );
        assert!(Query::parse(Some("f=%ff")).is_err());
    }
}
