//! Query strings as IdPs send them: `+` for spaces, percent-encoding, empty parts and a
//! trailing `&` ignored, parameter names matched case-insensitively. A parameter given twice
//! with different values is refused: answering either would be a guess.

use crate::scim::error::{ScimError, ScimResult};

/// Far more than a SCIM request has (at most eight), and few enough that checking each
/// against the earlier ones stays cheap: the query is read before the token is checked.
const MAX_PARAMS: usize = 64;

#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> ScimResult<Query> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            let mut same = pairs
                .iter()
                .filter(|(k0, _): &&(String, String)| k0.eq_ignore_ascii_case(&k));
            match same.next() {
                Some((_, v0)) if *v0 != v => {
                    return Err(ScimError::invalid_value(format!(
                        "the query parameter {} is given twice with different values",
                        k.chars().take(40).collect::<String>()
                    )));
                }
                // The same parameter again, with the same value: nothing new to keep.
                Some(_) => continue,
                None if pairs.len() == MAX_PARAMS => {
                    return Err(ScimError::invalid_value(format!(
                        "more than {MAX_PARAMS} query parameters"
                    )));
                }
                None => pairs.push((k, v)),
            }
        }
        Ok(Query { pairs })
    }

    /// The value of `name` (case-insensitive), if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.get(n).is_some())
    }
}

fn decode(s: &str) -> ScimResult<String> {
    // Copied only when there is a `+` to turn into a space.
    let spaced = match s.contains('+') {
        true => std::borrow::Cow::Owned(s.replace('+', " ")),
        false => std::borrow::Cow::Borrowed(s),
    };
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
    fn many_parameters_cost_little_and_too_many_distinct_ones_are_refused() {
        // Read before the token is checked: repeats are kept once, not compared pairwise.
        let q = Query::parse(Some(&"a&".repeat(30_000))).unwrap();
        assert_eq!((q.get("a"), q.pairs.len()), (Some(""), 1));
        let q = Query::parse(Some(
            &(0..64).map(|i| format!("p{i}=1&")).collect::<String>(),
        ));
        assert_eq!(q.unwrap().pairs.len(), 64);
        let e = Query::parse(Some(
            &(0..65).map(|i| format!("p{i}=1&")).collect::<String>(),
        ))
        .unwrap_err();
        assert_eq!(
            (e.status, e.detail.as_str()),
            (400, "more than 64 query parameters")
        );
    }

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
        // Twice alike is one parameter; twice different is a question with two meanings.
        assert_eq!(
            Query::parse(Some("count=2&COUNT=2")).unwrap().get("count"),
            Some("2")
        );
        let e = Query::parse(Some("count=1&Count=2")).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("Count is given twice"), "{}", e.detail);
    }
}
