//! A tenant's resource types with declared schema extensions (as `[[tenants.NAME.extensions]]`
//! would give), shared by the tenant-aware fuzz targets.

use scimd::config::ExtensionConfig;
use scimd::scim::schema::{Kind, Rt, SchemaDef};
use serde_json::json;
use std::sync::OnceLock;

pub const ACME_USER: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
pub const ACME_GROUP: &str = "urn:ietf:params:scim:schemas:extension:acme:2.0:Group";

fn ext(v: serde_json::Value) -> &'static SchemaDef {
    let e: ExtensionConfig = serde_json::from_value(v).expect("extension config");
    scimd::extensions::schema(&e)
}

fn rt(kind: Kind, own: Vec<&'static SchemaDef>) -> Rt {
    let mut all: Vec<&'static SchemaDef> = kind.extensions().to_vec();
    all.extend(own);
    Rt { kind, ext: Box::leak(all.into_boxed_slice()) }
}

/// The full declaration: every type, every mutability and `returned`, complex single and
/// multi-valued, one required attribute.
fn acme_user() -> &'static SchemaDef {
    static S: OnceLock<&'static SchemaDef> = OnceLock::new();
    S.get_or_init(|| ext(json!({
        "urn": ACME_USER, "name": "Acme", "resource": "User",
        "attributes": [
            {"name": "badge", "mutability": "immutable"},
            {"name": "region", "required": true},
            {"name": "secret", "returned": "never"},
            {"name": "pin", "mutability": "writeOnly"},
            {"name": "code", "mutability": "readOnly"},
            {"name": "level", "type": "integer"},
            {"name": "score", "type": "decimal"},
            {"name": "hired", "type": "dateTime"},
            {"name": "vip", "type": "boolean"},
            {"name": "tags", "multi_valued": true},
            {"name": "cert", "type": "binary"},
            {"name": "homepage", "type": "reference", "reference_types": ["external"]},
            {"name": "note", "returned": "request"},
            {"name": "tag", "returned": "always"},
            {"name": "phones", "type": "complex", "multi_valued": true, "sub_attributes": [
                {"name": "value"}, {"name": "type"}, {"name": "primary", "type": "boolean"},
                {"name": "hidden", "returned": "never"}, {"name": "when", "type": "dateTime"}]},
            {"name": "sponsor", "type": "complex", "sub_attributes": [
                {"name": "value"}, {"name": "display"}, {"name": "pinCode", "returned": "never"},
                {"name": "since", "type": "dateTime", "mutability": "immutable"}]}
        ]})))
}

/// The same URN as declared later with fewer attributes and nothing hidden: records stored
/// under `acme_user` are rendered under this.
#[allow(dead_code)]
fn acme_user_reduced() -> &'static SchemaDef {
    static S: OnceLock<&'static SchemaDef> = OnceLock::new();
    S.get_or_init(|| ext(json!({
        "urn": ACME_USER, "name": "Acme", "resource": "User",
        "attributes": [
            {"name": "badge"}, {"name": "level", "type": "integer"}, {"name": "tags", "multi_valued": true},
            {"name": "phones", "type": "complex", "multi_valued": true, "sub_attributes": [
                {"name": "value"}, {"name": "type"}]},
            {"name": "sponsor", "type": "complex", "sub_attributes": [{"name": "value"}]}
        ]})))
}

fn acme_group() -> &'static SchemaDef {
    static S: OnceLock<&'static SchemaDef> = OnceLock::new();
    S.get_or_init(|| ext(json!({
        "urn": ACME_GROUP, "name": "AcmeGroup", "resource": "Group",
        "attributes": [
            {"name": "code", "mutability": "immutable"},
            {"name": "secret", "returned": "never"},
            {"name": "note", "returned": "request"},
            {"name": "owners", "type": "complex", "multi_valued": true, "sub_attributes": [
                {"name": "value"}, {"name": "type"}, {"name": "primary", "type": "boolean"}]}
        ]})))
}

pub fn full(kind: Kind) -> Rt {
    static U: OnceLock<Rt> = OnceLock::new();
    static G: OnceLock<Rt> = OnceLock::new();
    match kind {
        Kind::User => *U.get_or_init(|| rt(Kind::User, vec![acme_user()])),
        Kind::Group => *G.get_or_init(|| rt(Kind::Group, vec![acme_group()])),
    }
}

/// The tenant after it narrowed its declaration (User) or took its extension out (Group).
#[allow(dead_code)]
pub fn reduced(kind: Kind) -> Rt {
    static U: OnceLock<Rt> = OnceLock::new();
    match kind {
        Kind::User => *U.get_or_init(|| rt(Kind::User, vec![acme_user_reduced()])),
        Kind::Group => Kind::Group.into(),
    }
}

pub fn base_raw(kind: Kind) -> serde_json::Value {
    match kind {
        Kind::User => json!({"userName": "a@b.c", "active": true, "externalId": "x1",
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@b.c", "type": "work", "primary": true}, {"value": "a@home", "type": "home"}],
            "phoneNumbers": [{"value": "+1", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops", "manager": {"value": "m1", "displayName": "M"}},
            (ACME_USER): {"badge": "B7", "region": "eu", "secret": "s", "pin": "1234", "level": 3,
                "score": 1.5, "hired": "2020-01-01T00:00:00Z", "vip": true, "tags": ["a", "b"],
                "cert": "QUJD", "note": "n", "tag": "t",
                "phones": [{"value": "1", "type": "work", "primary": true, "hidden": "h"}, {"value": "2", "type": "home"}],
                "sponsor": {"value": "s1", "display": "S", "pinCode": "9", "since": "2021-01-01T00:00:00Z"}}}),
        Kind::Group => json!({"displayName": "Staff", "externalId": "g-ext",
            (ACME_GROUP): {"code": "C1", "secret": "s", "note": "n",
                "owners": [{"value": "u1", "type": "User", "primary": true}]}}),
    }
}
