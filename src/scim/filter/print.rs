//! Printing: a filter as text that parses back to the same filter.

use std::fmt;

use super::{AttrPath, CompValue, Filter};

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
            CompValue::Num(_, text) => write!(f, "{text}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => write!(f, "null"),
        }
    }
}

/// Printed with only the parentheses the grammar needs (`and` binds tighter than `or`; a
/// chain of either reads the same however it is grouped), so that printing never nests
/// deeper than the parsed text did and the result always parses back within the same depth
/// limit.
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
                grouped(b, f, matches!(**b, Filter::Or(..)))
            }
            Filter::Or(a, b) => {
                write!(f, "{a}")?;
                f.write_str(" or ")?;
                write!(f, "{b}")
            }
            Filter::Not(a) => write!(f, "not ({a})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}
