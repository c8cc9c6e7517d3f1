//! Parsing: tokens into a `Filter`, syntax only.

use super::lex::{Tok, err, lex};
use super::{AttrPath, CompValue, CompareOp, Filter, Limits};
use crate::scim::error::{ScimError, ScimResult};

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    max_depth: usize,
    /// Inside a value filter (`emails[...]`), where the grammar has no other value filter.
    in_value: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.0).unwrap_or(self.end)
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self, depth: usize) -> ScimResult<Filter> {
        self.chain(depth, "or", Self::and, Filter::Or)
    }

    fn and(&mut self, depth: usize) -> ScimResult<Filter> {
        self.chain(depth, "and", Self::unary, Filter::And)
    }

    /// `term (keyword term)*`; one term alone (most lookups) is returned as it is, without
    /// a list to balance.
    fn chain(
        &mut self,
        depth: usize,
        keyword: &str,
        term: fn(&mut Self, usize) -> ScimResult<Filter>,
        join: fn(Box<Filter>, Box<Filter>) -> Filter,
    ) -> ScimResult<Filter> {
        let first = term(self, depth)?;
        if !self.keyword(keyword) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.keyword(keyword) {
            self.pos += 1;
            terms.push(term(self, depth)?);
        }
        Ok(balanced(terms, join))
    }

    fn unary(&mut self, depth: usize) -> ScimResult<Filter> {
        if depth > self.max_depth {
            return Err(err(
                self.at(),
                format!(
                    "nested deeper than {} levels (of parentheses and `not`)",
                    self.max_depth
                ),
            ));
        }
        // Followed by an operator, `not` names an attribute: RFC 7644's grammar allows one
        // called so (`emails[not eq "a"]`), and its `not` is always followed by a filter.
        let names_attribute = matches!(
            self.toks.get(self.pos + 1).map(|t| &t.1),
            Some(Tok::Word(w)) if CompareOp::parse(w).is_some() || w.eq_ignore_ascii_case("pr")
        );
        if self.keyword("not") && !names_attribute {
            self.pos += 1;
            // `not (…)` is one level, as the filter is printed: its parentheses are the
            // RFC's form of `not`, not a group of their own.
            if self.peek() == Some(&Tok::Open) {
                self.pos += 1;
                let f = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(err(self.at(), "expected ')'"));
                }
                self.pos += 1;
                return Ok(Filter::Not(Box::new(f)));
            }
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        match self.peek() {
            Some(Tok::Open) => {
                self.pos += 1;
                let f = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(err(self.at(), "expected ')'"));
                }
                self.pos += 1;
                Ok(f)
            }
            Some(Tok::Word(_)) => self.attr_expr(depth),
            Some(_) => Err(err(self.at(), "expected an attribute name, '(' or not")),
            None => Err(err(
                self.at(),
                "unexpected end; expected an attribute name, '(' or not",
            )),
        }
    }

    fn attr_expr(&mut self, depth: usize) -> ScimResult<Filter> {
        let start = self.at();
        let Some(Tok::Word(word)) = self.peek().cloned() else {
            return Err(err(start, "expected an attribute name"));
        };
        self.pos += 1;
        let path = parse_path(&word)
            .ok_or_else(|| err(start, format!("\"{word}\" is not an attribute path")))?;
        if self.peek() == Some(&Tok::LBracket) {
            if self.in_value {
                return Err(err(
                    self.at(),
                    "a value filter cannot hold another value filter (RFC 7644 §3.4.2.2); \
                     name the sub-attributes directly, as in emails[type eq \"work\" and \
                     value co \"x\"]",
                ));
            }
            if path.sub.is_some() {
                return Err(err(
                    self.at(),
                    "a value filter '[' must follow the attribute name",
                ));
            }
            self.pos += 1;
            self.in_value = true;
            let inner = self.or(depth + 1);
            self.in_value = false;
            let inner = inner?;
            if self.peek() != Some(&Tok::RBracket) {
                return Err(err(self.at(), "expected ']' to close the value filter"));
            }
            self.pos += 1;
            // Entra: `emails[type eq "work"].value eq "x"`.
            if let Some(Tok::Word(w)) = self.peek().cloned()
                && let Some(sub) = w.strip_prefix('.')
            {
                let at = self.at();
                self.pos += 1;
                if !valid_name(sub) {
                    return Err(err(at, format!("\"{sub}\" is not a sub-attribute name")));
                }
                let rel = AttrPath {
                    urn: None,
                    name: sub.to_string(),
                    sub: None,
                };
                let cond = self.condition(rel, &format!("{word}[...].{sub}"))?;
                return Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(Filter::And(Box::new(inner), Box::new(cond))),
                });
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        self.condition(path, &word)
    }

    /// `pr`, or an operator and a value, after an attribute path.
    fn condition(&mut self, path: AttrPath, shown: &str) -> ScimResult<Filter> {
        let at = self.at();
        let Some(Tok::Word(op)) = self.peek().cloned() else {
            return Err(err(
                at,
                format!(
                    "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after \"{shown}\""
                ),
            ));
        };
        self.pos += 1;
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&op) else {
            return Err(err(
                at,
                format!(
                    "\"{op}\" is not a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"
                ),
            ));
        };
        let vat = self.at();
        let value = match self.peek().cloned() {
            Some(Tok::Str(s)) => CompValue::Str(s),
            // Read as an unquoted word it would be compared quotes and all, and a lookup
            // that finds no one makes an IdP create the user again.
            Some(Tok::Word(w)) if w.starts_with('\'') => {
                return Err(err(
                    vat,
                    format!("{w} is in single quotes; a string value goes in double quotes"),
                ));
            }
            Some(Tok::Word(w)) => word_value(&w),
            _ => {
                return Err(err(
                    vat,
                    format!("expected a value after \"{}\"", op.as_str()),
                ));
            }
        };
        self.pos += 1;
        Ok(Filter::Compare { path, op, value })
    }
}

/// A chain `a or b or c …` as a tree of depth log2(n), not n: every pass over a filter
/// recurses into it, and a lookup of a few hundred ids (`id eq "…" or id eq "…"`) as a
/// left-leaning chain overflowed the stack. `and` and `or` are associative, so the shape
/// changes nothing; the terms keep their order.
fn balanced(mut terms: Vec<Filter>, join: fn(Box<Filter>, Box<Filter>) -> Filter) -> Filter {
    if terms.len() == 1 {
        return terms.pop().expect("one term");
    }
    let right = terms.split_off(terms.len() / 2);
    join(
        Box::new(balanced(terms, join)),
        Box::new(balanced(right, join)),
    )
}

/// An unquoted value: a JSON literal or number, else the word itself as a string.
fn word_value(w: &str) -> CompValue {
    match w.to_ascii_lowercase().as_str() {
        "true" => CompValue::Bool(true),
        "false" => CompValue::Bool(false),
        "null" => CompValue::Null,
        _ => match serde_json::from_str::<serde_json::Number>(w)
            .ok()
            .and_then(|n| n.as_f64())
        {
            Some(n) => CompValue::Num(n, w.to_string()),
            None => CompValue::Str(w.to_string()),
        },
    }
}

fn valid_name(n: &str) -> bool {
    n == "$ref"
        || (n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

fn parse_path(word: &str) -> Option<AttrPath> {
    let (urn, rest) = if word
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        let i = word.rfind(':')?;
        (Some(word[..i].to_string()), &word[i + 1..])
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !valid_name(name) || sub.is_some_and(|s| !valid_name(s)) {
        return None;
    }
    Some(AttrPath {
        urn,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

/// Syntax only: any attribute names are accepted.
pub fn parse(input: &str) -> ScimResult<Filter> {
    parse_with(input, Limits::default())
}

/// As `parse`, within `limits`.
pub fn parse_with(input: &str, limits: Limits) -> ScimResult<Filter> {
    if input.len() > limits.max_len {
        return Err(ScimError::invalid_filter(format!(
            "the filter is {} bytes long; the limit is {}",
            input.len(),
            limits.max_len
        )));
    }
    let toks = lex(input)?;
    if toks.is_empty() {
        return Err(ScimError::invalid_filter("the filter is empty"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: input.chars().count(),
        in_value: false,
        max_depth: limits.max_depth,
    };
    let f = p.or(0)?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected text after the end of the filter"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::filter::tests::{bad, m, m_parsed};
    use crate::scim::filter::{Limits, parse_for_with};
    use crate::scim::filter::{MAX_DEPTH, MAX_FILTER_LEN};
    use crate::scim::schema::Kind;

    #[test]
    fn logic_precedence_and_parentheses() {
        assert!(m("title pr and userName sw \"b\" or nickName pr"));
        assert!(m("nickName pr or title pr and active eq true"));
        assert!(!m("(nickName pr or title pr) and active eq false"));
        assert!(m("not (nickName pr)") && m("NOT nickName pr"));
        assert!(!m("not (title pr) and title pr"));
        let f = parse("a eq 1 or b eq 2 and c eq 3").unwrap();
        assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(..))));
    }

    /// Every pass over a filter (resolving, planning, matching, printing, dropping) recurses
    /// into it: a chain of terms must not be as deep as it is long.
    #[test]
    fn a_long_chain_is_a_shallow_tree() {
        fn depth(f: &Filter) -> usize {
            match f {
                Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
                Filter::Not(a) => 1 + depth(a),
                Filter::ValuePath { filter, .. } => 1 + depth(filter),
                _ => 0,
            }
        }
        let limits = Limits {
            max_len: usize::MAX,
            ..Limits::default()
        };
        let terms: Vec<String> = (0..20_000).map(|i| format!("title eq \"t{i}\"")).collect();
        let or = format!(
            "{} or userName eq \"bjensen@example.com\"",
            terms.join(" or ")
        );
        let f = parse_for_with(Kind::User, &or, limits).unwrap();
        assert!(depth(&f) <= 16, "{}", depth(&f));
        assert!(m_parsed(&f));
        // The terms keep their order.
        assert!(
            f.to_string()
                .starts_with("title eq \"t0\" or title eq \"t1\" or title eq")
        );
        let and = format!(
            "userName pr and {}",
            vec!["active eq true"; 20_000].join(" and ")
        );
        let f = parse_for_with(Kind::User, &and, limits).unwrap();
        assert!(depth(&f) <= 16 && m_parsed(&f));
        let f = parse_for_with(
            Kind::User,
            &format!("{and} and title pr and nickName pr"),
            limits,
        );
        assert!(!m_parsed(&f.unwrap()));
    }

    #[test]
    fn value_paths_and_the_entra_form() {
        assert!(m("emails[type eq \"work\" and value co \"@example.com\"]"));
        assert!(!m("emails[type eq \"home\" and value co \"@example.com\"]"));
        assert!(m(
            "emails[type eq \"work\"].value eq \"bjensen@example.com\""
        ));
        assert!(!m(
            "emails[type eq \"home\"].value eq \"bjensen@example.com\""
        ));
        assert!(m("emails.value eq \"BABS@jensen.org\"") && m("emails eq \"babs@jensen.org\""));
        assert!(m("emails[not (type eq \"other\")]"));
        assert!(m("emails[type eq \"work\"].value pr"));
        // An attribute may be called `not`: followed by an operator, it is one.
        let attr = |f: Filter| match f {
            Filter::Compare { path, .. } | Filter::Present(path) => path.name,
            Filter::ValuePath { filter, .. } => match *filter {
                Filter::Compare { path, .. } => path.name,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(attr(parse("emails[not eq \"a\"]").unwrap()), "not");
        assert_eq!(attr(parse("NOT pr").unwrap()), "NOT");
        assert!(matches!(parse("not userName eq \"a\""), Ok(Filter::Not(_))));
        // `not (…)` counts one level, so a printed filter parses back under the same limit.
        let deep = format!("{}a pr", "not ".repeat(17));
        let printed = parse(&deep).unwrap().to_string();
        assert_eq!(parse(&printed).unwrap(), parse(&deep).unwrap(), "{printed}");
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        let e = bad("userName eq");
        assert!(e.detail.contains("expected a value"), "{}", e.detail);
        assert!(
            bad("userName xx \"a\"")
                .detail
                .contains("not a comparison operator")
        );
        assert!(bad("userName eq \"a").detail.contains("unterminated"));
        assert!(bad("(userName eq \"a\"").detail.contains("')'"));
        assert!(bad("userName eq \"a\")").detail.contains("unexpected text"));
        assert!(bad("emails[type eq \"work\"").detail.contains("']'"));
        assert!(bad("").detail.contains("empty"));
        assert!(bad("   ").detail.contains("empty"));
        assert!(bad("userName").detail.contains("position 8"));
        bad("and eq \"x\" eq");
        bad("1abc eq \"x\"");
        bad("userName eq \"a\" garbage");
        bad("userName eq \"a\" and");
        assert!(bad("userName eq 'a'").detail.contains("double quotes"));
        // Inside double quotes a single quote is a character like any other.
        assert!(parse("userName eq \"o'brien\"").is_ok());
    }

    #[test]
    fn limits() {
        let e = parse(&"(".repeat(100_000)).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().detail.contains("nested deeper"));
        let ok = format!("{}a pr{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok).is_ok());
        // The limit is the most levels allowed, exactly.
        let nest = |n: usize| parse(&format!("{}a pr{}", "(".repeat(n), ")".repeat(n)));
        assert!(nest(MAX_DEPTH).is_ok() && nest(MAX_DEPTH + 1).is_err());
        assert!(
            parse(&"not ".repeat(100))
                .unwrap_err()
                .detail
                .contains("nested")
        );
        let long = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(parse(&long).unwrap_err().detail.contains("limit"));
    }

    #[test]
    fn errors_say_where_in_characters_and_what() {
        // Ten two-byte letters: "zz" is at character 25, byte 35.
        let e = parse("userName eq \"éééééééééé\" zz").unwrap_err();
        assert!(e.detail.contains("at position 25:"), "{}", e.detail);
        let e = parse("emails[type eq \"work\" and emails[type eq \"x\"]]").unwrap_err();
        assert!(
            e.detail.contains("cannot hold another value filter"),
            "{}",
            e.detail
        );
        assert!(parse("emails[type eq \"work\"] and addresses[type eq \"home\"]").is_ok());
    }
}
