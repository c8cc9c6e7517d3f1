//! Schema extensions declared in a tenant's section, and the checks of their attributes.

use serde::{Deserialize, Serialize};

/// A schema extension declared in the configuration (RFC 7643 §7 characteristics).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    /// The schema URN, e.g. `urn:ietf:params:scim:schemas:extension:acme:2.0:User`.
    pub urn: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `User` (default) or `Group`.
    #[serde(default = "default_resource")]
    pub resource: String,
    pub attributes: Vec<AttributeConfig>,
}

fn default_resource() -> String {
    "User".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub name: String,
    /// string, boolean, integer, decimal, dateTime, reference, binary or complex.
    #[serde(rename = "type", default = "default_type")]
    pub ty: String,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub case_exact: bool,
    /// readWrite (default), readOnly, immutable or writeOnly.
    #[serde(default = "default_mutability")]
    pub mutability: String,
    /// default (default), always, request or never.
    #[serde(default = "default_returned")]
    pub returned: String,
    /// none (default) or server.
    #[serde(default = "default_uniqueness")]
    pub uniqueness: String,
    #[serde(default)]
    pub canonical_values: Vec<String>,
    #[serde(default)]
    pub reference_types: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// For `complex`: its sub-attributes (which cannot be complex themselves).
    #[serde(default)]
    pub sub_attributes: Vec<AttributeConfig>,
}

fn default_type() -> String {
    "string".into()
}
fn default_mutability() -> String {
    "readWrite".into()
}
fn default_returned() -> String {
    "default".into()
}
fn default_uniqueness() -> String {
    "none".into()
}

pub(super) fn check_attribute(key: &str, a: &AttributeConfig, nested: bool, p: &mut Vec<String>) {
    let valid = a.name.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        p.push(format!(
            "{key}.name: \"{}\" is not a SCIM attribute name (letters, digits, '-' and '_')",
            a.name
        ));
    }
    let types = [
        "string",
        "boolean",
        "integer",
        "decimal",
        "dateTime",
        "reference",
        "binary",
        "complex",
    ];
    if !types.contains(&a.ty.as_str()) {
        p.push(format!(
            "{key}.type: \"{}\" is not one of {}",
            a.ty,
            types.join(", ")
        ));
    }
    if a.ty == "complex" && nested {
        p.push(format!(
            "{key}.type: a sub-attribute cannot be complex (RFC 7643 §2.3.8)"
        ));
    }
    if a.ty == "complex" && a.sub_attributes.is_empty() {
        p.push(format!(
            "{key}.sub_attributes: a complex attribute needs sub-attributes"
        ));
    }
    if a.ty != "complex" && !a.sub_attributes.is_empty() {
        p.push(format!(
            "{key}.sub_attributes: only a complex attribute has sub-attributes"
        ));
    }
    for (field, v, allowed) in [
        (
            "mutability",
            &a.mutability,
            &["readWrite", "readOnly", "immutable", "writeOnly"][..],
        ),
        (
            "returned",
            &a.returned,
            &["default", "always", "request", "never"][..],
        ),
        ("uniqueness", &a.uniqueness, &["none", "server"][..]),
    ] {
        if !allowed.contains(&v.as_str()) {
            p.push(format!(
                "{key}.{field}: \"{v}\" is not one of {}",
                allowed.join(", ")
            ));
        }
    }
    // scimd stores neither: a readOnly value only the server could set, and a writeOnly
    // one is taken and dropped, so every write would be refused as missing it.
    if a.required && matches!(a.mutability.as_str(), "readOnly" | "writeOnly") {
        p.push(format!(
            "{key}.required: a {} attribute cannot be required: {}",
            a.mutability,
            if a.mutability == "readOnly" {
                "no client may set it, and scimd sets no extension values itself"
            } else {
                "scimd never stores writeOnly values"
            }
        ));
    }
    if a.uniqueness == "server" && (a.ty == "complex" || a.multi_valued || nested) {
        p.push(format!(
            "{key}.uniqueness: only single-valued top-level attributes can be unique"
        ));
    }
    // A 409 on a value no one may read back would tell any writer that someone holds it;
    // and a writeOnly value is never stored, so there is nothing to be unique against.
    if a.uniqueness == "server" && (a.returned == "never" || a.mutability == "writeOnly") {
        p.push(format!(
            "{key}.uniqueness: a value that is never returned cannot be unique (a conflict \
             would tell whoever writes it that someone holds it)"
        ));
    }
    for (i, sub) in a.sub_attributes.iter().enumerate() {
        check_attribute(&format!("{key}.sub_attributes[{i}]"), sub, true, p);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{GOOD, toml_cfg};

    #[test]
    fn extension_declarations_are_checked() {
        let text = format!(
            "{GOOD}\n[[tenants.acme.extensions]]\nurn = \"not-a-urn\"\nname = \"X\"\nresource = \"Widget\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"a\"\ntype = \"float\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"c\"\ntype = \"complex\"\n\
             [[tenants.acme.extensions.attributes.sub_attributes]]\nname = \"d\"\ntype = \"complex\"\nuniqueness = \"global\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"e\"\nuniqueness = \"server\"\nreturned = \"never\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"f\"\nuniqueness = \"server\"\nmutability = \"writeOnly\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"g\"\nuniqueness = \"server\"\nreturned = \"request\"\n"
        );
        let c = toml_cfg(&text);
        let p = c.problems().join("\n");
        for needle in [
            "tenants.acme.extensions[0].urn",
            "tenants.acme.extensions[0].resource",
            "tenants.acme.extensions[0].attributes[0].type: \"float\"",
            "attributes[1].sub_attributes[0].type: a sub-attribute cannot be complex",
            "attributes[1].sub_attributes[0].uniqueness",
            "attributes[2].uniqueness: a value that is never returned",
            "attributes[3].uniqueness: a value that is never returned",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        assert!(!p.contains("attributes[4]"), "{p}");
    }
}
