//! SCIM filters (RFC 7644 §3.4.2.2): a non-backtracking parser with length and depth limits,
//! resolution of attribute names against the schema, and evaluation on stored JSON. Also
//! accepts what IdPs really send: Entra's `emails[type eq "work"].value eq "..."` and
//! unquoted values from Microsoft's reference tests. Pure; no I/O.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use super::error::{ScimError, ScimResult};
use super::schema::{AttrDef, AttrType, Returned, Rt, SCHEMAS_ATTR, from_the_url, resolve};

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
    Num(f64),
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

// ---------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    /// A run of characters that are not space, brackets or quotes: attribute paths,
    /// operators, keywords, numbers and bare values.
    Word(String),
    Str(String),
}

fn err(pos: usize, msg: impl fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("invalid filter at position {pos}: {msg}"))
}

/// The four hex digits of a `\u` escape.
fn hex4(it: &mut impl Iterator<Item = (usize, char)>) -> Option<u32> {
    let hex: String = it.take(4).map(|x| x.1).collect();
    // Four hex digits (RFC 8259 §7); `from_str_radix` alone would take a sign.
    if hex.len() != 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&hex, 16).ok()
}

fn lex(input: &str) -> ScimResult<Vec<(usize, Tok)>> {
    let mut out = Vec::new();
    let mut it = input.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' | ')' | '[' | ']' => {
                it.next();
                out.push((
                    i,
                    match c {
                        '(' => Tok::Open,
                        ')' => Tok::Close,
                        '[' => Tok::LBracket,
                        _ => Tok::RBracket,
                    },
                ));
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((j, c)) = it.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match it.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, 'b')) => s.push('\u{8}'),
                            Some((_, 'f')) => s.push('\u{c}'),
                            Some((_, 'u')) => {
                                let bad = || err(j, "bad \\u escape in a string");
                                let mut code = hex4(&mut it).ok_or_else(bad)?;
                                // JSON writes a character beyond the BMP as a surrogate pair
                                // (RFC 8259 §7): "\ud83d\ude00".
                                if (0xD800..0xDC00).contains(&code) {
                                    let low = match (it.next(), it.next()) {
                                        (Some((_, '\\')), Some((_, 'u'))) => hex4(&mut it),
                                        _ => None,
                                    }
                                    .filter(|l| (0xDC00..0xE000).contains(l))
                                    .ok_or_else(bad)?;
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                }
                                s.push(char::from_u32(code).ok_or_else(bad)?);
                            }
                            Some((_, other)) => s.push(other),
                            None => return Err(err(j, "unterminated string")),
                        },
                        other => s.push(other),
                    }
                }
                if !closed {
                    return Err(err(i, "unterminated string (a closing \" is missing)"));
                }
                out.push((i, Tok::Str(s)));
            }
            c if c.is_control() => {
                return Err(err(i, format!("control character U+{:04X}", c as u32)));
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, c)) = it.peek() {
                    if c.is_control() && !c.is_whitespace() {
                        return Err(err(i, format!("control character U+{:04X}", c as u32)));
                    }
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        break;
                    }
                    w.push(c);
                    it.next();
                }
                out.push((i, Tok::Word(w)));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parsing

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    max_depth: usize,
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
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> ScimResult<Filter> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
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
            if path.sub.is_some() {
                return Err(err(
                    self.at(),
                    "a value filter '[' must follow the attribute name",
                ));
            }
            self.pos += 1;
            let inner = self.or(depth + 1)?;
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
            Some(n) => CompValue::Num(n),
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
        end: input.len(),
        max_depth: limits.max_depth,
    };
    let f = p.or(0)?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected text after the end of the filter"));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------
// Resolution against the schema

/// What a path's names are resolved against.
#[derive(Clone, Copy)]
enum Scope {
    Resource(Rt),
    Element(&'static AttrDef),
}

/// The definitions a resolved path leads to: the attribute and its sub-attribute, if any.
fn lookup(scope: Scope, p: &AttrPath) -> Option<(&'static AttrDef, Option<&'static AttrDef>)> {
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
fn is_schemas(p: &AttrPath) -> bool {
    p.urn.is_none() && p.name.eq_ignore_ascii_case("schemas")
}

/// A resource's `schemas` as its answers show them: the core schema and each extension it
/// holds a value of.
fn schemas_of(kind: Rt, obj: &Value) -> Value {
    let mut list = vec![Value::String(kind.kind.schema().id.to_string())];
    for ext in kind.ext {
        if obj
            .get(ext.id)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            list.push(Value::String(ext.id.to_string()));
        }
    }
    Value::Array(list)
}

/// The type a comparison on `def`/`sub` compares with.
fn leaf(def: &'static AttrDef, sub: Option<&'static AttrDef>) -> Option<&'static AttrDef> {
    match sub {
        Some(s) => Some(s),
        None if def.is_complex() => def.sub("value"),
        None => Some(def),
    }
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
        Filter::Compare { path, op, value } => {
            let rp = resolve_path(scope, path)?;
            let (def, sub) = lookup(scope, path)
                .ok_or_else(|| ScimError::invalid_filter("unknown attribute"))?;
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
                (_, v) => v.clone(),
            };
            if l.ty == AttrType::Boolean && (op.ordering() || op.substring()) {
                return Err(ScimError::invalid_filter(format!(
                    "\"{}\" is a boolean; only eq and ne apply",
                    l.name
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
                && parse_time(v).is_none()
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
            Filter::Compare {
                path: rp,
                op: *op,
                value,
            }
        }
        Filter::ValuePath { path, filter } => {
            if path.sub.is_some() {
                return Err(ScimError::invalid_filter(
                    "a value filter must follow the attribute name",
                ));
            }
            let rp = resolve_path(scope, path)?;
            let (def, _) = lookup(scope, path)
                .ok_or_else(|| ScimError::invalid_filter("unknown attribute"))?;
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

// ---------------------------------------------------------------------------------------
// Evaluation

/// The leaf values at `p` in `obj`, each with the definition it compares as.
fn values_at<'v>(scope: Scope, obj: &'v Value, p: &AttrPath) -> Vec<(&'v Value, &'static AttrDef)> {
    let Some((def, sub, v)) = node_at(scope, obj, p) else {
        return Vec::new();
    };
    let Some(l) = leaf(def, sub) else {
        return Vec::new();
    };
    let pick = |el: &'v Value| -> Option<&'v Value> {
        if def.is_complex() {
            el.get(l.name)
        } else {
            Some(el)
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(pick).map(|x| (x, l)).collect(),
        other => pick(other).map(|x| vec![(x, l)]).unwrap_or_default(),
    }
}

/// The whole attribute `p` names in `obj`, with its definitions.
fn node_at<'v>(
    scope: Scope,
    obj: &'v Value,
    p: &AttrPath,
) -> Option<(&'static AttrDef, Option<&'static AttrDef>, &'v Value)> {
    let (def, sub) = lookup(scope, p)?;
    let container = match &p.urn {
        Some(u) if matches!(scope, Scope::Resource(_)) => obj.get(u.as_str()),
        _ => Some(obj),
    };
    // An unset attribute with a default (`active`) matches as the responses show it.
    static UNSET: [Value; 2] = [Value::Bool(false), Value::Bool(true)];
    let unset = match scope {
        Scope::Resource(_) => def.unset.map(|b| &UNSET[usize::from(b)]),
        Scope::Element(_) => None,
    };
    container
        .and_then(|c| c.get(def.name))
        .or(unset)
        .map(|v| (def, sub, v))
}

/// `pr`: a complex attribute named without a sub-attribute (`name pr`, `addresses pr`) is
/// present when it holds a non-empty node (RFC 7644 §3.4.2.2), whatever its sub-attributes.
fn present_at(scope: Scope, obj: &Value, p: &AttrPath) -> bool {
    match node_at(scope, obj, p) {
        Some((def, None, v)) if def.is_complex() => match v {
            Value::Array(items) => items.iter().any(present),
            other => present(other),
        },
        _ => values_at(scope, obj, p).iter().any(|(v, _)| present(v)),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn compare_one(actual: &Value, def: &AttrDef, op: CompareOp, expected: &CompValue) -> bool {
    let ord = |o: Ordering| match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    };
    match (actual, expected) {
        (Value::String(a), CompValue::Str(e)) => {
            if def.ty == AttrType::DateTime
                && let (Some(x), Some(y)) = (parse_time(a), parse_time(e))
            {
                return ord(x.cmp(&y));
            }
            let (a, e) = if def.case_exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                _ => ord(a.cmp(&e)),
            }
        }
        (Value::Number(a), CompValue::Num(e)) => {
            a.as_f64().and_then(|a| a.partial_cmp(e)).is_some_and(ord)
        }
        (Value::Number(a), CompValue::Str(e)) => match (a.as_f64(), e.parse::<f64>().ok()) {
            (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(ord),
            _ => false,
        },
        (Value::String(a), CompValue::Num(e)) => a
            .parse::<f64>()
            .ok()
            .and_then(|a| a.partial_cmp(e))
            .is_some_and(ord),
        (Value::Bool(a), CompValue::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            // Reached for a multi-valued attribute: `emails.primary ne false`.
            CompareOp::Ne => a != e,
            _ => false,
        },
        _ => false,
    }
}

fn eval(scope: Scope, f: &Filter, obj: &Value) -> bool {
    match f {
        // `schemas` is not stored: the condition is judged on what the answer would show.
        Filter::Compare { path, .. } | Filter::Present(path)
            if is_schemas(path) && obj.get("schemas").is_none() =>
        {
            let Scope::Resource(kind) = scope else {
                return false;
            };
            let shown = serde_json::json!({ "schemas": schemas_of(kind, obj) });
            eval(scope, f, &shown)
        }
        Filter::And(a, b) => eval(scope, a, obj) && eval(scope, b, obj),
        Filter::Or(a, b) => eval(scope, a, obj) || eval(scope, b, obj),
        Filter::Not(a) => !eval(scope, a, obj),
        Filter::Present(p) => present_at(scope, obj, p),
        // RFC 7644 §3.4.2.2: on a multi-valued attribute a filter matches if any value
        // matches, `ne` too (`emails.type ne "work"`: some email is not a work one). Use
        // `not (... eq ...)` for "none equals".
        Filter::Compare {
            path,
            op: CompareOp::Ne,
            value,
        } if *value != CompValue::Null
            && lookup(scope, path).is_some_and(|(def, _)| def.multi_valued) =>
        {
            values_at(scope, obj, path)
                .iter()
                .any(|(v, def)| compare_one(v, def, CompareOp::Ne, value))
        }
        Filter::Compare {
            path,
            op: CompareOp::Ne,
            value,
        } => !eval(
            scope,
            &Filter::Compare {
                path: path.clone(),
                op: CompareOp::Eq,
                value: value.clone(),
            },
            obj,
        ),
        Filter::Compare { path, op, value } => {
            let vals = values_at(scope, obj, path);
            if *value == CompValue::Null {
                return *op == CompareOp::Eq && !vals.iter().any(|(v, _)| present(v));
            }
            vals.iter().any(|(v, def)| compare_one(v, def, *op, value))
        }
        Filter::ValuePath { path, filter } => {
            let Some((def, _)) = lookup(scope, path) else {
                return false;
            };
            let container = match &path.urn {
                Some(u) if matches!(scope, Scope::Resource(_)) => obj.get(u.as_str()),
                _ => Some(obj),
            };
            match container.and_then(|c| c.get(def.name)) {
                Some(Value::Array(items)) => {
                    items.iter().any(|el| eval(Scope::Element(def), filter, el))
                }
                Some(el @ Value::Object(_)) => eval(Scope::Element(def), filter, el),
                _ => false,
            }
        }
    }
}

/// Evaluate a resolved filter against a resource's JSON (core attributes at the top level,
/// extension attributes under their URN, `id` and `meta` included by the caller).
pub fn matches(f: &Filter, kind: impl Into<Rt>, resource: &Value) -> bool {
    let kind: Rt = kind.into();
    eval(Scope::Resource(kind), f, resource)
}

/// The conditions of `f` (comparisons, presence tests and value paths) under its `and`,
/// `or` and `not`, each with the attribute it is on.
pub fn conditions(f: &Filter) -> Vec<(&Filter, &AttrPath)> {
    fn walk<'f>(f: &'f Filter, out: &mut Vec<(&'f Filter, &'f AttrPath)>) {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Filter::Not(a) => walk(a, out),
            Filter::Compare { path, .. }
            | Filter::Present(path)
            | Filter::ValuePath { path, .. } => out.push((f, path)),
        }
    }
    let mut out = Vec::new();
    walk(f, &mut out);
    out
}

/// The conditions of `f` on the core attribute `name`: for a multi-valued one, each can be
/// decided a part of its values at a time (see `every_part`).
pub fn conditions_on<'f>(f: &'f Filter, name: &str) -> Vec<&'f Filter> {
    conditions(f)
        .into_iter()
        .filter(|(_, p)| p.urn.is_none() && p.name == name)
        .map(|(c, _)| c)
        .collect()
}

/// How a condition on a multi-valued attribute follows from parts of its values: `eq null`
/// holds only if it holds on every part (true), the others, `ne` included, if they hold on
/// some part (false). An attribute with no values counts as one empty part.
pub fn every_part(condition: &Filter) -> bool {
    matches!(
        condition,
        Filter::Compare {
            op: CompareOp::Eq,
            value: CompValue::Null,
            ..
        }
    )
}

/// Evaluate like `matches`, except that the conditions `decided` names (by address, as
/// `conditions_on` gives them) take the given answer.
pub fn matches_deciding(
    f: &Filter,
    kind: impl Into<Rt>,
    resource: &Value,
    decided: &[(&Filter, bool)],
) -> bool {
    fn go(scope: Scope, f: &Filter, obj: &Value, decided: &[(&Filter, bool)]) -> bool {
        if let Some((_, answer)) = decided.iter().find(|(c, _)| std::ptr::eq(*c, f)) {
            return *answer;
        }
        match f {
            Filter::And(a, b) => go(scope, a, obj, decided) && go(scope, b, obj, decided),
            Filter::Or(a, b) => go(scope, a, obj, decided) || go(scope, b, obj, decided),
            Filter::Not(a) => !go(scope, a, obj, decided),
            leaf => eval(scope, leaf, obj),
        }
    }
    go(Scope::Resource(kind.into()), f, resource, decided)
}

/// Evaluate a resolved element filter against one element of `def`.
pub fn matches_element(f: &Filter, def: &'static AttrDef, element: &Value) -> bool {
    eval(Scope::Element(def), f, element)
}

// ---------------------------------------------------------------------------------------
// Printing

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => write!(f, "{}", serde_json::to_string(s).map_err(|_| fmt::Error)?),
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => write!(f, "null"),
        }
    }
}

/// Printed with only the parentheses the grammar needs (`and` binds tighter than `or`, both
/// group to the left), so that printing never nests deeper than the parsed text did and the
/// result always parses back within the same depth limit.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grouped = |x: &Filter, f: &mut fmt::Formatter<'_>, paren: bool| {
            if paren {
                write!(f, "({x})")
            } else {
                write!(f, "{x}")
            }
        };
        match self {
            Filter::And(a, b) => {
                grouped(a, f, matches!(**a, Filter::Or(..)))?;
                f.write_str(" and ")?;
                grouped(b, f, matches!(**b, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(a, b) => {
                grouped(a, f, false)?;
                f.write_str(" or ")?;
                grouped(b, f, matches!(**b, Filter::Or(..)))
            }
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_SCHEMA, Kind, USER_SCHEMA};
    use serde_json::json;

    fn user() -> Value {
        json!({"id": "2819c223", "userName": "Bjensen@Example.com", "externalId": "Ext-1", "active": true,
            "title": "Tour Guide", "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"resourceType": "User", "created": "2011-08-01T18:29:49.793Z", "lastModified": "2011-08-01T18:29:49.793Z"},
            (ENTERPRISE_SCHEMA): {"employeeNumber": "701984", "manager": {"value": "26118915"}}})
    }

    fn m(filter: &str) -> bool {
        let f = parse_for(Kind::User, filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        matches(&f, Kind::User, &user())
    }

    #[test]
    fn conditions_on_members_decided_part_by_part_agree_with_the_whole_list() {
        let members: Vec<Value> = ["u1", "u2", "g1", "u3", "g2"]
            .iter()
            .map(|v| json!({"value": v, "type": if v.starts_with('g') { "Group" } else { "User" }}))
            .collect();
        let filters = [
            "members.type eq \"Group\"",
            "members.type ne \"Group\"",
            "members.type ne \"Robot\"",
            "members.value co \"3\" and not (members.value eq \"u9\")",
            "members[type eq \"User\" and value sw \"u\"] or displayName eq \"x\"",
            "members.type eq \"User\" and members.type eq \"Group\"",
            "members eq null",
            "members ne null",
            "members.value gt null",
            "not (members pr) or displayName pr",
        ];
        let whole = |list: &[Value]| json!({"displayName": "d", "members": list});
        for text in filters {
            let f = parse_for(Kind::Group, text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let conditions = conditions_on(&f, "members");
            assert!(!conditions.is_empty(), "{text}");
            for list in [&members[..], &members[..1], &[]] {
                for part in [1, 2, 5] {
                    let mut decided: Vec<(&Filter, bool)> =
                        conditions.iter().map(|c| (*c, every_part(c))).collect();
                    let parts: Vec<&[Value]> = match list.is_empty() {
                        true => vec![list],
                        false => list.chunks(part).collect(),
                    };
                    for chunk in parts {
                        for (c, answer) in decided.iter_mut() {
                            let here = matches(c, Kind::Group, &json!({ "members": chunk }));
                            match every_part(c) {
                                true => *answer &= here,
                                false => *answer |= here,
                            }
                        }
                    }
                    let body = json!({"displayName": "d"});
                    assert_eq!(
                        matches_deciding(&f, Kind::Group, &body, &decided),
                        matches(&f, Kind::Group, &whole(list)),
                        "{text} on {} members in parts of {part}",
                        list.len()
                    );
                }
            }
        }
    }

    fn bad(filter: &str) -> ScimError {
        let e = parse_for(Kind::User, filter).expect_err(filter);
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{filter}");
        e
    }

    #[test]
    fn every_operator() {
        assert!(m("userName eq \"bjensen@example.com\""));
        assert!(!m("userName ne \"bjensen@example.com\""));
        assert!(m("userName ne \"other\""));
        assert!(m("title co \"our\"") && m("title sw \"tour\"") && m("title ew \"GUIDE\""));
        assert!(!m("title sw \"guide\""));
        assert!(m("name.familyName gt \"A\"") && m("name.familyName ge \"Jensen\""));
        assert!(m("name.familyName lt \"K\"") && m("name.familyName le \"jensen\""));
        assert!(!m("name.familyName lt \"Jensen\""));
        assert!(m("title pr") && !m("nickName pr"));
        // A complex attribute without a sub-attribute is present when it holds anything.
        assert!(m("name pr") && m("emails pr") && !m("addresses pr"));
        assert!(m(&format!("{ENTERPRISE_SCHEMA}:manager pr")) && !m("name.middleName pr"));
        assert!(!m("not (name pr)"));
        assert!(m("nickName eq null") && !m("title eq null"));
        assert!(m("active eq true") && m("active eq \"True\"") && !m("active eq false"));
        // `ne` on a multi-valued boolean: some value differs (the one email is primary).
        assert!(m("emails.primary ne false") && !m("emails.primary ne true"));
        assert!(m("active ne false") && !m("active ne true"));
        // `schemas` (RFC 7644 §3.4.2.2, Figure 2), from the extensions the user holds.
        assert!(m(&format!("schemas eq \"{ENTERPRISE_SCHEMA}\"")) && m("schemas pr"));
        assert!(m(&format!("SCHEMAS eq \"{}\"", USER_SCHEMA.to_uppercase())));
        assert!(!m("schemas eq \"urn:example:other\""));
        assert!(m("not (schemas eq \"urn:example:other\")"));
        assert!(m("nickName ne \"x\""), "an absent attribute is ne anything");
        // Multi-valued: some value differs (RFC 7644 §3.4.2.2); none equals is `not eq`.
        assert!(m("emails.type ne \"work\"") && !m("not (emails.type eq \"work\")"));
        assert!(m("emails.type ne \"other\"") && m("emails.value ne null"));
        assert!(!m("addresses.type ne \"work\""), "no values: none differs");
    }

    #[test]
    fn an_unset_active_matches_as_the_true_that_responses_show() {
        let unset = json!({"userName": "a"});
        let off = json!({"userName": "b", "active": false});
        let on = |f: &str, u: &Value| matches(&parse_for(Kind::User, f).unwrap(), Kind::User, u);
        assert!(on("active eq true", &unset) && !on("active eq false", &unset));
        assert!(on("active pr", &unset) && !on("active eq null", &unset));
        assert!(on("userName sw \"a\" and active eq true", &unset));
        assert!(on("active eq false", &off) && !on("active eq true", &off));
    }

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
    fn logic_precedence_and_parentheses() {
        assert!(m("title pr and userName sw \"b\" or nickName pr"));
        assert!(m("nickName pr or title pr and active eq true"));
        assert!(!m("(nickName pr or title pr) and active eq false"));
        assert!(m("not (nickName pr)") && m("NOT nickName pr"));
        assert!(!m("not (title pr) and title pr"));
        let f = parse("a eq 1 or b eq 2 and c eq 3").unwrap();
        assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(..))));
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
    fn dates_compare_as_instants() {
        assert!(m("meta.lastModified gt \"2011-05-13T04:42:34Z\""));
        assert!(
            m("meta.lastModified gt \"2011-08-01T11:29:49-07:00\""),
            "one second earlier in another offset"
        );
        assert!(!m("meta.lastModified gt \"2011-08-01T11:29:50-07:00\""));
        assert!(m("meta.created lt \"2015-10-10T14:38:21.8617979-07:00\""));
        assert!(
            m("meta.Created lt 2015-10-10T14:38:21.8617979-07:00"),
            "unquoted date"
        );
        // Something that is no date would match nothing, silently: refused instead.
        for f in [
            "meta.lastModified gt \"not-a-date\"",
            "meta.created eq \"2011-08-01\"",
        ] {
            assert!(bad(f).detail.contains("not a date-time"), "{f}");
        }
        assert!(!m("meta.created eq null") && m("meta.created sw \"2011-08\""));
    }

    #[test]
    fn strings_escapes_numbers_and_bare_words() {
        // `\u` takes four hex digits, no sign.
        assert!(parse("a eq \"\\u+041\"").is_err());
        let f = parse("a eq \"x and (y) [z] & \\\"q\\\" \\u00e9\"").unwrap();
        assert_eq!(
            f,
            Filter::Compare {
                path: AttrPath {
                    urn: None,
                    name: "a".into(),
                    sub: None
                },
                op: CompareOp::Eq,
                value: CompValue::Str("x and (y) [z] & \"q\" é".into())
            }
        );
        assert!(
            matches!(parse("a gt -1.5e2").unwrap(), Filter::Compare { value: CompValue::Num(n), .. } if n == -150.0)
        );
        let pair = parse("a eq \"\\ud83d\\ude00!\"").unwrap();
        assert!(
            matches!(&pair, Filter::Compare { value: CompValue::Str(v), .. } if v == "\u{1F600}!"),
            "{pair:?}"
        );
        for lone in [
            "a eq \"\\ud83d\"",
            "a eq \"\\ud83dx\"",
            "a eq \"\\ud83d\\u0041\"",
        ] {
            assert!(parse(lone).is_err(), "{lone}");
        }
        assert!(m("emails.Value co example.com"));
        assert!(m(
            "name.FamilyName eq Jensen and (emails.Value co example.com or emails.Value co example.org)"
        ));
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
    }

    #[test]
    fn unknown_attributes_and_wrong_operators() {
        assert!(bad("shoeSize eq 9").detail.contains("shoeSize"));
        bad("name.shoe eq \"x\"");
        bad("urn:ietf:params:scim:schemas:extension:acme:2.0:User:x eq \"y\"");
        bad("emails[shoe eq \"x\"]");
        bad("active gt true");
        bad("active co \"t\"");
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
    fn element_filters() {
        let def = Kind::Group.schema().attr("members").unwrap();
        let f = parse_element_filter(def, "VALUE eq \"a\" or type eq \"Group\"").unwrap();
        assert!(matches_element(
            &f,
            def,
            &json!({"value": "a", "type": "User"})
        ));
        assert!(matches_element(
            &f,
            def,
            &json!({"value": "b", "type": "Group"})
        ));
        assert!(!matches_element(
            &f,
            def,
            &json!({"value": "b", "type": "User"})
        ));
        assert!(parse_element_filter(def, "nope eq \"a\"").is_err());
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
                (-1000i32..1000).prop_map(|n| CompValue::Num(f64::from(n))),
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

            #[test]
            fn printing_then_parsing_gives_the_same_filter(f in filter()) {
                prop_assert_eq!(parse(&f.to_string()), Ok(f));
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
