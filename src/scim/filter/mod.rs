//! SCIM filters (RFC 7644 §3.4.2.2): a non-backtracking parser with length and depth limits,
//! resolution of attribute names against the schema, and evaluation on stored JSON. Also
//! accepts what IdPs really send: Entra's `emails[type eq "work"].value eq "..."` and
//! unquoted values from Microsoft's reference tests. Pure; no I/O.

mod eval;
mod lex;
mod parse;
mod print;
mod resolve;

pub use eval::{conditions, conditions_on, every_part, matches, matches_deciding, matches_element};
pub use parse::{parse, parse_with};
pub use resolve::{
    ForType, check_known_somewhere, parse_element_filter, parse_for, parse_for_with,
    resolve_for_type,
};

pub const MAX_FILTER_LEN: usize = 8192;
pub const MAX_DEPTH: usize = 32;

/// How long and how deeply nested a filter may be (`server.max_filter_length`,
/// `server.max_filter_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_len: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: MAX_FILTER_LEN,
            max_depth: MAX_DEPTH,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    /// A number and its text as written: compared with a text attribute (an unquoted
    /// `externalId eq 0042`), it is that text.
    Num(f64, String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    /// `emails[type eq "work"]`: `path` has no `sub`; the inner filter's paths are relative to
    /// one element of the attribute (their `name` is a sub-attribute name).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

impl CompareOp {
    fn parse(s: &str) -> Option<CompareOp> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
    fn ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
    fn substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::{ScimError, ScimType};
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind};
    use serde_json::{Value, json};

    fn user() -> Value {
        json!({"id": "2819c223", "userName": "Bjensen@Example.com", "externalId": "Ext-1", "active": true,
            "title": "Tour Guide", "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"resourceType": "User", "created": "2011-08-01T18:29:49.793Z", "lastModified": "2011-08-01T18:29:49.793Z"},
            (ENTERPRISE_SCHEMA): {"employeeNumber": "701984", "manager": {"value": "26118915"}}})
    }

    pub(super) fn m(filter: &str) -> bool {
        let f = parse_for(Kind::User, filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        m_parsed(&f)
    }

    pub(super) fn m_parsed(f: &Filter) -> bool {
        matches(f, Kind::User, &user())
    }

    pub(super) fn bad(filter: &str) -> ScimError {
        let e = parse_for(Kind::User, filter).expect_err(filter);
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{filter}");
        e
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn path() -> impl Strategy<Value = AttrPath> {
            prop_oneof![
                Just(("userName", None)),
                Just(("title", None)),
                Just(("active", None)),
                Just(("name", Some("familyName"))),
                Just(("emails", Some("value"))),
                Just(("externalId", None)),
            ]
            .prop_map(|(n, s)| AttrPath {
                urn: None,
                name: n.into(),
                sub: s.map(str::to_string),
            })
        }

        fn value() -> impl Strategy<Value = CompValue> {
            prop_oneof![
                "[a-zA-Z0-9 @.\"\\\\()\\[\\]&]{0,8}".prop_map(CompValue::Str),
                (-1000i32..1000).prop_map(|n| CompValue::Num(f64::from(n), n.to_string())),
                any::<bool>().prop_map(CompValue::Bool),
                Just(CompValue::Null),
            ]
        }

        fn op() -> impl Strategy<Value = CompareOp> {
            prop_oneof![
                Just(CompareOp::Eq),
                Just(CompareOp::Ne),
                Just(CompareOp::Co),
                Just(CompareOp::Sw),
                Just(CompareOp::Ew),
                Just(CompareOp::Gt),
                Just(CompareOp::Ge),
                Just(CompareOp::Lt),
                Just(CompareOp::Le),
            ]
        }

        fn filter() -> impl Strategy<Value = Filter> {
            let leaf = prop_oneof![
                (path(), op(), value()).prop_map(|(path, op, value)| Filter::Compare {
                    path,
                    op,
                    value
                }),
                path().prop_map(Filter::Present),
                ("[a-z]{1,5}", "[a-z]{1,5}").prop_map(|(a, v)| Filter::ValuePath {
                    path: AttrPath {
                        urn: None,
                        name: "emails".into(),
                        sub: None
                    },
                    filter: Box::new(Filter::Compare {
                        path: AttrPath {
                            urn: None,
                            name: a,
                            sub: None
                        },
                        op: CompareOp::Eq,
                        value: CompValue::Str(v)
                    }),
                }),
            ];
            leaf.prop_recursive(6, 64, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                    inner.prop_map(|a| Filter::Not(Box::new(a))),
                ]
            })
        }

        /// Resolved filters (valid for Users) for the semantic properties.
        fn resolved() -> impl Strategy<Value = Filter> {
            filter().prop_filter_map("valid for User", |f| {
                parse_for(Kind::User, &f.to_string()).ok()
            })
        }

        fn resource() -> impl Strategy<Value = Value> {
            ("[a-c]{0,3}", proptest::option::of("[a-c]{0,3}"), any::<bool>(), proptest::collection::vec("[a-c@.]{0,4}", 0..3))
                .prop_map(|(u, t, a, emails)| {
                    let mut v = json!({"userName": u, "active": a,
                        "emails": emails.iter().map(|e| json!({"value": e, "type": "work"})).collect::<Vec<_>>()});
                    if let Some(t) = t {
                        v["title"] = json!(t);
                    }
                    v
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// The same filter up to how its `and` and `or` chains are grouped (parsing
            /// balances them): the same text when printed again, and the same answers.
            #[test]
            fn printing_then_parsing_gives_the_same_filter(f in filter(), r in resource()) {
                let text = f.to_string();
                let again = parse(&text).map(|g| g.to_string());
                prop_assert_eq!(again.as_deref(), Ok(text.as_str()));
                if let Ok(resolved) = parse_for(Kind::User, &text) {
                    let reparsed = parse_for(Kind::User, &resolved.to_string()).unwrap();
                    prop_assert_eq!(
                        matches(&resolved, Kind::User, &r),
                        matches(&reparsed, Kind::User, &r)
                    );
                }
            }

            #[test]
            fn never_panics_on_any_text(s in "\\PC{0,64}") {
                if let Err(e) = parse(&s) {
                    prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
                }
            }

            #[test]
            fn never_panics_on_filter_shaped_text(s in "(userName|eq|and|or|not|pr|emails|\\[|\\]|\\(|\\)|\"a\"|\\.value| ){0,24}") {
                if let Err(e) = parse_for(Kind::User, &s) {
                    prop_assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
                }
            }

            #[test]
            fn logic_laws_hold(a in resolved(), b in resolved(), r in resource()) {
                let ev = |f: &Filter| matches(f, Kind::User, &r);
                let not = |f: &Filter| Filter::Not(Box::new(f.clone()));
                let and = |x: Filter, y: Filter| Filter::And(Box::new(x), Box::new(y));
                let or = |x: Filter, y: Filter| Filter::Or(Box::new(x), Box::new(y));
                prop_assert_eq!(ev(&not(&not(&a))), ev(&a));
                prop_assert_eq!(ev(&and(a.clone(), b.clone())), ev(&and(b.clone(), a.clone())));
                prop_assert_eq!(ev(&not(&and(a.clone(), b.clone()))), ev(&or(not(&a), not(&b))));
                prop_assert_eq!(ev(&not(&or(a.clone(), b.clone()))), ev(&and(not(&a), not(&b))));
            }
        }
    }
}
