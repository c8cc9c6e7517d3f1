//! Schema extensions declared in the configuration, turned into the same static attribute
//! definitions the built-in schemas use. Definitions are interned: a reload with unchanged
//! declarations reuses them, so only a changed declaration allocates (and keeps) new ones.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::config::{AttributeConfig, ExtensionConfig, TenantConfig};
use crate::scim::schema::{
    AttrDef, AttrType, Kind, Mutability, Returned, Rt, SchemaDef, Uniqueness,
};

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_strs(v: &[String]) -> &'static [&'static str] {
    Box::leak(
        v.iter()
            .map(|s| leak_str(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

fn attr(a: &AttributeConfig) -> AttrDef {
    AttrDef {
        unset: None,
        name: leak_str(&a.name),
        ty: match a.ty.as_str() {
            "boolean" => AttrType::Boolean,
            "integer" => AttrType::Integer,
            "decimal" => AttrType::Decimal,
            "dateTime" => AttrType::DateTime,
            "reference" => AttrType::Reference,
            "binary" => AttrType::Binary,
            "complex" => AttrType::Complex,
            _ => AttrType::String,
        },
        multi_valued: a.multi_valued,
        required: a.required,
        case_exact: a.case_exact,
        mutability: match a.mutability.as_str() {
            "readOnly" => Mutability::ReadOnly,
            "immutable" => Mutability::Immutable,
            "writeOnly" => Mutability::WriteOnly,
            _ => Mutability::ReadWrite,
        },
        returned: match a.returned.as_str() {
            "always" => Returned::Always,
            "request" => Returned::Request,
            "never" => Returned::Never,
            _ => Returned::Default,
        },
        uniqueness: if a.uniqueness == "server" {
            Uniqueness::Server
        } else {
            Uniqueness::None
        },
        canonical_values: leak_strs(&a.canonical_values),
        reference_types: leak_strs(&a.reference_types),
        sub_attributes: Box::leak(
            a.sub_attributes
                .iter()
                .map(attr)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        ),
        description: leak_str(&a.description),
    }
}

type Interned = HashMap<ExtensionConfig, &'static SchemaDef>;

fn intern() -> &'static Mutex<Interned> {
    static CACHE: OnceLock<Mutex<Interned>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

pub fn schema(e: &ExtensionConfig) -> &'static SchemaDef {
    let mut cache = match intern().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(s) = cache.get(e) {
        return s;
    }
    let def: &'static SchemaDef = Box::leak(Box::new(SchemaDef {
        id: leak_str(&e.urn),
        name: leak_str(&e.name),
        description: leak_str(&e.description),
        attributes: Box::leak(
            e.attributes
                .iter()
                .map(attr)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        ),
    }));
    cache.insert(e.clone(), def);
    def
}

/// A tenant's view of a resource type: the built-in extensions plus its own.
pub fn resource_type(kind: Kind, tenant: &TenantConfig) -> Rt {
    let own: Vec<&'static SchemaDef> = tenant
        .extensions
        .iter()
        .filter(|e| e.resource == kind.as_str())
        .map(schema)
        .collect();
    if own.is_empty() {
        return kind.into();
    }
    let mut all: Vec<&'static SchemaDef> = kind.extensions().to_vec();
    all.extend(own);
    // One small slice per distinct extension set; interned through the schemas above.
    static SETS: OnceLock<Mutex<HashMap<Vec<usize>, &'static [&'static SchemaDef]>>> =
        OnceLock::new();
    let key: Vec<usize> = all
        .iter()
        .map(|s| *s as *const SchemaDef as usize)
        .collect();
    let mut sets = match SETS.get_or_init(|| Mutex::new(HashMap::new())).lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let ext = *sets
        .entry(key)
        .or_insert_with(|| Box::leak(all.into_boxed_slice()));
    Rt { kind, ext }
}
