//! placeholder (helper writing it)
use super::error::ScimResult;
use super::schema::{AttrDef, Kind};
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
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}
pub fn parse(_input: &str) -> ScimResult<Filter> {
    todo!()
}
pub fn parse_for(_kind: Kind, _input: &str) -> ScimResult<Filter> {
    todo!()
}
pub fn parse_element_filter(_def: &'static AttrDef, _input: &str) -> ScimResult<Filter> {
    todo!()
}
pub fn matches(_f: &Filter, _kind: Kind, _resource: &serde_json::Value) -> bool {
    todo!()
}
pub fn matches_element(_f: &Filter, _def: &'static AttrDef, _element: &serde_json::Value) -> bool {
    todo!()
}
