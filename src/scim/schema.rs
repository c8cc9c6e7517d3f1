//! Attribute definitions of the resources scimd serves (RFC 7643 §4, §8.7): core User, the
//! enterprise User extension and Group. Pure data plus name resolution; no I/O.

use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Binary => "binary",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

#[derive(Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttrDef],
    pub description: &'static str,
    /// What the attribute reads as while unset, in responses, filters and sorting alike
    /// (a user without `active` is active). Only booleans have one.
    pub unset: Option<bool>,
}

impl AttrDef {
    const fn new(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
        AttrDef {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description,
            unset: None,
        }
    }
    const fn s(name: &'static str, description: &'static str) -> AttrDef {
        AttrDef::new(name, AttrType::String, description)
    }
    const fn b(name: &'static str, description: &'static str) -> AttrDef {
        AttrDef::new(name, AttrType::Boolean, description)
    }
    const fn r(name: &'static str, types: &'static [&'static str], d: &'static str) -> AttrDef {
        let mut a = AttrDef::new(name, AttrType::Reference, d);
        a.reference_types = types;
        a
    }
    const fn complex(name: &'static str, subs: &'static [AttrDef], d: &'static str) -> AttrDef {
        let mut a = AttrDef::new(name, AttrType::Complex, d);
        a.sub_attributes = subs;
        a
    }
    const fn unset_reads(mut self, v: bool) -> AttrDef {
        self.unset = Some(v);
        self
    }
    const fn multi(mut self) -> AttrDef {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> AttrDef {
        self.required = true;
        self
    }
    const fn exact(mut self) -> AttrDef {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> AttrDef {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> AttrDef {
        self.returned = r;
        self
    }
    const fn unique(mut self) -> AttrDef {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn canonical(mut self, v: &'static [&'static str]) -> AttrDef {
        self.canonical_values = v;
        self
    }

    /// Sub-attribute by name, case-insensitively (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&'static AttrDef> {
        find(self.sub_attributes, name)
    }

    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            // RFC 7643 §7: a writeOnly attribute is never returned, whatever else it says.
            "returned": match self.returned {
                _ if self.mutability == Mutability::WriteOnly => "never",
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
        });
        let o = v.as_object_mut().expect("object literal");
        if matches!(
            self.ty,
            AttrType::String | AttrType::Reference | AttrType::Binary
        ) {
            o.insert("caseExact".into(), Value::Bool(self.case_exact));
        }
        // Complex attributes too, as RFC 7643 §8.7.1 lists them (`name`, `emails`: "none"):
        // validators compare against that listing.
        o.insert(
            "uniqueness".into(),
            json!(match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            }),
        );
        if !self.canonical_values.is_empty() {
            o.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if !self.reference_types.is_empty() {
            o.insert("referenceTypes".into(), json!(self.reference_types));
        }
        if !self.sub_attributes.is_empty() {
            o.insert(
                "subAttributes".into(),
                Value::Array(self.sub_attributes.iter().map(AttrDef::to_json).collect()),
            );
        }
        v
    }
}

/// Case-insensitive lookup of an attribute definition in a list.
pub fn find(list: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    list.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttrDef],
}

impl SchemaDef {
    /// The top-level attributes that read as a value while unset, with that value.
    pub fn unset_values(&self) -> impl Iterator<Item = (&'static str, bool)> + use<> {
        self.attributes
            .iter()
            .filter_map(|a| a.unset.map(|v| (a.name, v)))
    }
    pub fn attr(&self, name: &str) -> Option<&'static AttrDef> {
        find(self.attributes, name)
    }

    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttrDef::to_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", self.id)},
        })
    }
}

use Mutability::{Immutable, ReadOnly, WriteOnly};

const TYPE_WHP: &[&str] = &["work", "home", "other"];

const fn multi_complex(name: &'static str, d: &'static str, subs: &'static [AttrDef]) -> AttrDef {
    AttrDef::complex(name, subs, d).multi()
}

const EMAIL_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "Email address for the User."),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function.").canonical(TYPE_WHP),
    AttrDef::b("primary", "Whether this is the primary email address."),
];
const PHONE_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "Phone number of the User."),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function.")
        .canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
    AttrDef::b("primary", "Whether this is the primary phone number."),
];
const IMS_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "Instant messaging address for the User."),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function.")
        .canonical(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    AttrDef::b("primary", "Whether this is the primary address."),
];
const PHOTO_SUBS: &[AttrDef] = &[
    AttrDef::r("value", &["external"], "URL of a photo of the User.").exact(),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function.")
        .canonical(&["photo", "thumbnail"]),
    AttrDef::b("primary", "Whether this is the primary photo."),
];
const ADDRESS_SUBS: &[AttrDef] = &[
    AttrDef::s(
        "formatted",
        "The full mailing address, formatted for display.",
    ),
    AttrDef::s("streetAddress", "The full street address component."),
    AttrDef::s("locality", "The city or locality component."),
    AttrDef::s("region", "The state or region component."),
    AttrDef::s("postalCode", "The zip code or postal code component."),
    AttrDef::s("country", "The country name component."),
    AttrDef::s("type", "A label indicating the attribute's function.").canonical(TYPE_WHP),
    AttrDef::b("primary", "Whether this is the primary address."),
];
const USER_GROUP_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "The identifier of the User's group.").mutability(ReadOnly),
    AttrDef::r("$ref", &["User", "Group"], "The URI of the group.").mutability(ReadOnly),
    AttrDef::s("display", "A human-readable name of the group.").mutability(ReadOnly),
    AttrDef::s("type", "How the membership was derived.")
        .canonical(&["direct", "indirect"])
        .mutability(ReadOnly),
];
const VALUE_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "The value of the entry."),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function."),
    AttrDef::b("primary", "Whether this is the primary value."),
];
const CERT_SUBS: &[AttrDef] = &[
    // Base64 text: its case is part of the value (RFC 7643 §2.3.6).
    AttrDef::new(
        "value",
        AttrType::Binary,
        "The value of an X.509 certificate.",
    )
    .exact(),
    AttrDef::s(
        "display",
        "A human-readable name, primarily used for display purposes.",
    ),
    AttrDef::s("type", "A label indicating the attribute's function."),
    AttrDef::b("primary", "Whether this is the primary certificate."),
];
const NAME_SUBS: &[AttrDef] = &[
    AttrDef::s("formatted", "The full name, formatted for display."),
    AttrDef::s("familyName", "The family name of the User."),
    AttrDef::s("givenName", "The given name of the User."),
    AttrDef::s("middleName", "The middle name(s) of the User."),
    AttrDef::s("honorificPrefix", "The honorific prefix(es) of the User."),
    AttrDef::s("honorificSuffix", "The honorific suffix(es) of the User."),
];

/// `schemas`, for filters only (RFC 7644 §3.4.2.2: "Clients MAY query by schema or schema
/// extensions"): it is written from the resource's extensions, never stored or patched.
pub const SCHEMAS_ATTR: AttrDef = AttrDef::s("schemas", "The schemas the resource uses.")
    .multi()
    .mutability(ReadOnly)
    .returned(Returned::Always);

/// Whether `sub` of `parent` is written into answers from the request's URL and never stored
/// (`meta.location`, any `$ref`): filtering or sorting by it would see it absent everywhere.
pub fn from_the_url(parent: &AttrDef, sub: &AttrDef) -> bool {
    sub.name == "$ref" || (parent.name == "meta" && sub.name == "location")
}

/// Attributes every resource carries (RFC 7643 §3.1), resolved before schema attributes.
pub const COMMON_ATTRS: &[AttrDef] = &[
    AttrDef::s("id", "Unique identifier assigned by the service provider.")
        .exact()
        .mutability(ReadOnly)
        .returned(Returned::Always)
        .unique(),
    AttrDef::s(
        "externalId",
        "Identifier assigned by the provisioning client.",
    )
    .exact(),
    AttrDef::complex("meta", META_SUBS, "Resource metadata.").mutability(ReadOnly),
];
const META_SUBS: &[AttrDef] = &[
    AttrDef::s("resourceType", "The name of the resource type.")
        .exact()
        .mutability(ReadOnly),
    AttrDef::new(
        "created",
        AttrType::DateTime,
        "When the resource was added.",
    )
    .mutability(ReadOnly),
    AttrDef::new(
        "lastModified",
        AttrType::DateTime,
        "When the resource was last modified.",
    )
    .mutability(ReadOnly),
    AttrDef::r("location", &["uri"], "The URI of the resource.")
        .exact()
        .mutability(ReadOnly),
    AttrDef::s("version", "The version (weak ETag) of the resource.")
        .exact()
        .mutability(ReadOnly),
];

pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: &[
        AttrDef::s(
            "userName",
            "Unique identifier for the User, used to authenticate.",
        )
        .required()
        .unique(),
        AttrDef::complex("name", NAME_SUBS, "The components of the user's real name."),
        AttrDef::s("displayName", "The name of the User, suitable for display."),
        AttrDef::s("nickName", "The casual way to address the user."),
        AttrDef::r(
            "profileUrl",
            &["external"],
            "A URI to the User's online profile.",
        )
        .exact(),
        AttrDef::s("title", "The user's title, such as \"Vice President\"."),
        AttrDef::s(
            "userType",
            "The relationship between the organization and the user.",
        ),
        AttrDef::s(
            "preferredLanguage",
            "The User's preferred written or spoken language.",
        ),
        AttrDef::s("locale", "The User's default location."),
        AttrDef::s("timezone", "The User's time zone in IANA format."),
        AttrDef::b("active", "The User's administrative status.").unset_reads(true),
        AttrDef::s("password", "The User's cleartext password; never returned.")
            .mutability(WriteOnly)
            .returned(Returned::Never),
        multi_complex("emails", "Email addresses for the user.", EMAIL_SUBS),
        multi_complex("phoneNumbers", "Phone numbers for the User.", PHONE_SUBS),
        multi_complex("ims", "Instant messaging addresses for the User.", IMS_SUBS),
        multi_complex("photos", "URLs of photos of the User.", PHOTO_SUBS),
        multi_complex("addresses", "Physical mailing addresses.", ADDRESS_SUBS),
        AttrDef::complex(
            "groups",
            USER_GROUP_SUBS,
            "Groups the user belongs to, computed from membership.",
        )
        .multi()
        .mutability(ReadOnly),
        multi_complex("entitlements", "Entitlements of the User.", VALUE_SUBS),
        multi_complex("roles", "Roles of the User.", VALUE_SUBS),
        multi_complex(
            "x509Certificates",
            "X.509 certificates issued to the User.",
            CERT_SUBS,
        ),
    ],
};

const MANAGER_SUBS: &[AttrDef] = &[
    AttrDef::s(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    AttrDef::r("$ref", &["User"], "The URI of the manager's SCIM resource."),
    // readOnly in RFC 7643 §4.3, where the server would fill it in; scimd keeps what the
    // IdP sends (OneLogin fills it from its own directory), and says so.
    AttrDef::s("displayName", "The displayName of the User's manager."),
];

pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        AttrDef::s(
            "employeeNumber",
            "Numeric or alphanumeric identifier assigned to a person.",
        ),
        AttrDef::s("costCenter", "Identifies the name of a cost center."),
        AttrDef::s("organization", "Identifies the name of an organization."),
        AttrDef::s("division", "Identifies the name of a division."),
        AttrDef::s("department", "Identifies the name of a department."),
        AttrDef::complex("manager", MANAGER_SUBS, "The User's manager."),
    ],
};

const MEMBER_SUBS: &[AttrDef] = &[
    AttrDef::s("value", "Identifier of the member of this Group.").mutability(Immutable),
    AttrDef::r(
        "$ref",
        &["User", "Group"],
        "The URI of the member resource.",
    )
    .mutability(Immutable),
    // Immutable (RFC 7643 §2.4): the client gives it with the member, as Okta does; giving
    // the member again replaces the member's entry, and the description says so.
    AttrDef::s(
        "display",
        "A human-readable name of the member, kept as sent. Given with the member; adding \
         the member again with another display, or a PUT or replace of members, replaces it.",
    )
    .mutability(Immutable),
    AttrDef::s("type", "The type of the member.")
        .canonical(&["User", "Group"])
        .mutability(Immutable),
];

pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &[
        AttrDef::s("displayName", "A human-readable name for the Group.")
            .required()
            .unique(),
        AttrDef::complex("members", MEMBER_SUBS, "A list of members of the Group.").multi(),
    ],
};

static USER_EXTENSIONS: &[&SchemaDef] = &[&ENTERPRISE_USER];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    pub fn schema(self) -> &'static SchemaDef {
        match self {
            Kind::User => &USER,
            Kind::Group => &GROUP,
        }
    }
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        match self {
            Kind::User => USER_EXTENSIONS,
            Kind::Group => &[],
        }
    }
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
    pub fn code(self) -> u8 {
        match self {
            Kind::User => 1,
            Kind::Group => 2,
        }
    }

    /// The kind a member entry's stored code names: a group's, or else a user's.
    pub fn of_member_code(code: u8) -> Kind {
        if code == Kind::Group.code() {
            Kind::Group
        } else {
            Kind::User
        }
    }
}

/// A resource type as one tenant sees it: the kind and its schema extensions (the enterprise
/// extension plus any the tenant declares). Compares equal to its `Kind`.
#[derive(Debug, Clone, Copy)]
pub struct Rt {
    pub kind: Kind,
    pub ext: &'static [&'static SchemaDef],
}

impl From<Kind> for Rt {
    fn from(kind: Kind) -> Rt {
        Rt {
            kind,
            ext: kind.extensions(),
        }
    }
}

impl PartialEq<Kind> for Rt {
    fn eq(&self, other: &Kind) -> bool {
        self.kind == *other
    }
}

impl Rt {
    pub fn as_str(self) -> &'static str {
        self.kind.as_str()
    }
    pub fn endpoint(self) -> &'static str {
        self.kind.endpoint()
    }
    pub fn schema(self) -> &'static SchemaDef {
        self.kind.schema()
    }
    pub fn code(self) -> u8 {
        self.kind.code()
    }
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        self.ext
    }
    /// Whether an extension declares attributes returned only on request or never: a
    /// stored resource must pass through the projection to lose them.
    pub fn hides_attributes(self) -> bool {
        let hidden = |a: &AttrDef| matches!(a.returned, Returned::Never | Returned::Request);
        self.ext.iter().any(|s| {
            s.attributes
                .iter()
                .any(|a| hidden(a) || a.sub_attributes.iter().any(hidden))
        })
    }
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.ext
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
}

/// Where an attribute lives in the stored JSON: at the top level or inside an extension object.
#[derive(Debug, Clone, Copy)]
pub struct AttrRef {
    /// `None` for core and common attributes; the canonical extension URN otherwise.
    pub ext: Option<&'static str>,
    pub def: &'static AttrDef,
}

/// Resolve a top-level attribute name, optionally URN-qualified (`urn:...:User:userName` or
/// `urn:...:enterprise:2.0:User:department`), to its canonical definition. An extension's
/// attribute named without its URN is found too, when one extension alone declares it: this
/// is for a name a client gives on its own (a PATCH path, a filter, `sortBy`, `attributes`).
pub fn resolve(kind: impl Into<Rt>, urn: Option<&str>, name: &str) -> Option<AttrRef> {
    let kind: Rt = kind.into();
    resolve_as_written(kind, urn, name).or_else(|| match urn {
        None => unqualified(kind, name),
        Some(_) => None,
    })
}

/// `resolve` for a key of a resource body, where an extension's attributes are found under
/// its URN only: Entra sends `"manager": null` and `"department": null` at the top level
/// beside the extension's object that holds the values, and read as the extension's they
/// would clear or contradict them.
pub fn resolve_as_written(kind: impl Into<Rt>, urn: Option<&str>, name: &str) -> Option<AttrRef> {
    let kind: Rt = kind.into();
    match urn {
        None => find(COMMON_ATTRS, name)
            .or_else(|| kind.schema().attr(name))
            .map(|def| AttrRef { ext: None, def }),
        Some(u) if u.eq_ignore_ascii_case(kind.schema().id) => find(COMMON_ATTRS, name)
            .or_else(|| kind.schema().attr(name))
            .map(|def| AttrRef { ext: None, def }),
        Some(u) => {
            let ext = kind.extension(u)?;
            ext.attr(name).map(|def| AttrRef {
                ext: Some(ext.id),
                def,
            })
        }
    }
}

/// An extension's attribute named without its URN, which no core attribute has: clients
/// SHOULD qualify extension attributes (RFC 7644 §3.10), and some don't (Entra's older
/// `"path":"manager"`). `None` when two of the resource type's extensions declare it.
fn unqualified(kind: Rt, name: &str) -> Option<AttrRef> {
    let mut found = kind.extensions().iter().filter_map(|ext| {
        ext.attr(name).map(|def| AttrRef {
            ext: Some(ext.id),
            def,
        })
    });
    let only = found.next()?;
    found.next().is_none().then_some(only)
}

/// Split `urn:...:Schema:attr.sub` into (urn, rest). The URN is the longest prefix naming a
/// schema known for `kind`; an unknown URN-looking prefix is returned as such so callers can
/// report it. A known URN followed by a dot (`…:2.0:User.department`) is read as by a colon:
/// Entra wrote extension paths so before 2018 (idp-notes §3.4), and read otherwise the
/// path names no attribute and the write would be dropped.
pub fn split_urn(kind: impl Into<Rt>, path: &str) -> (Option<&str>, &str) {
    let kind: Rt = kind.into();
    if !path
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        return (None, path);
    }
    let known = std::iter::once(kind.schema().id).chain(kind.extensions().iter().map(|s| s.id));
    // The longest: a tenant's `urn:…:enterprise:2.0:User:acme` begins with the enterprise
    // URN and a colon, and its attributes are its own.
    let mut best: Option<(&str, &str)> = None;
    for id in known {
        // `get`, not indexing: the prefix may end inside a multi-byte character.
        let found = if path.len() > id.len()
            && path
                .get(..id.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(id))
            && matches!(path.as_bytes()[id.len()], b':' | b'.')
        {
            Some((&path[..id.len()], &path[id.len() + 1..]))
        } else if path.eq_ignore_ascii_case(id) {
            Some((path, ""))
        } else {
            None
        };
        if let Some(f) = found
            && best.is_none_or(|b| f.0.len() > b.0.len())
        {
            best = Some(f);
        }
    }
    if let Some((urn, rest)) = best {
        return (Some(urn), rest);
    }
    // Unknown URN: the attribute name is what follows the last colon.
    match path.rfind(':') {
        Some(i) => (Some(&path[..i]), &path[i + 1..]),
        None => (None, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_case_insensitively_and_by_urn() {
        let a = resolve(Kind::User, None, "USERNAME").unwrap();
        assert_eq!(a.def.name, "userName");
        assert!(a.ext.is_none());
        let e = resolve(
            Kind::User,
            Some(&ENTERPRISE_SCHEMA.to_uppercase()),
            "department",
        );
        assert_eq!(e.unwrap().ext, Some(ENTERPRISE_SCHEMA));
        assert!(resolve(Kind::Group, None, "userName").is_none());
        assert_eq!(resolve(Kind::Group, None, "ID").unwrap().def.name, "id");
    }

    #[test]
    fn splits_urn_prefixed_paths() {
        let p = format!("{ENTERPRISE_SCHEMA}:manager.value");
        assert_eq!(
            split_urn(Kind::User, &p),
            (Some(ENTERPRISE_SCHEMA), "manager.value")
        );
        assert_eq!(
            split_urn(Kind::User, "name.givenName"),
            (None, "name.givenName")
        );
        assert_eq!(
            split_urn(Kind::User, "urn:x:y:Foo:bar"),
            (Some("urn:x:y:Foo"), "bar")
        );
        let core = format!("{USER_SCHEMA}:userName");
        assert_eq!(
            split_urn(Kind::User, &core),
            (Some(USER_SCHEMA), "userName")
        );
        // A known URN's dot is its colon; an unknown one's is part of its name.
        for (dotted, want) in [
            (format!("{ENTERPRISE_SCHEMA}.department"), "department"),
            (
                format!("{ENTERPRISE_SCHEMA}.manager.value"),
                "manager.value",
            ),
        ] {
            assert_eq!(
                split_urn(Kind::User, &dotted),
                (Some(ENTERPRISE_SCHEMA), want)
            );
        }
        assert_eq!(
            split_urn(Kind::User, &format!("{USER_SCHEMA}.title")),
            (Some(USER_SCHEMA), "title")
        );
        assert_eq!(
            split_urn(Kind::User, "urn:x:y:Foo.bar:baz"),
            (Some("urn:x:y:Foo.bar"), "baz")
        );
    }

    #[test]
    fn schema_json_describes_username_as_rfc_says() {
        let j = USER.to_json("https://h/scim/v2");
        let un = &j["attributes"][0];
        assert_eq!(un["name"], "userName");
        assert_eq!(un["required"], true);
        assert_eq!(un["caseExact"], false);
        assert_eq!(un["uniqueness"], "server");
        // Complex attributes carry it too, as in RFC 7643 §8.7.1.
        let attrs = j["attributes"].as_array().unwrap();
        for name in ["name", "emails", "groups"] {
            let a = attrs.iter().find(|a| a["name"] == name).unwrap();
            assert_eq!(a["type"], "complex", "{name}");
            assert_eq!(a["uniqueness"], "none", "{name}");
        }
    }

    #[test]
    fn the_managers_display_name_is_described_as_kept() {
        // scimd stores what the IdP sends there: the schema must not call it server-set.
        let j = ENTERPRISE_USER.to_json("https://h/scim/v2");
        let attrs = j["attributes"].as_array().unwrap();
        let manager = attrs.iter().find(|a| a["name"] == "manager").unwrap();
        let subs = manager["subAttributes"].as_array().unwrap();
        let dn = subs.iter().find(|a| a["name"] == "displayName").unwrap();
        assert_eq!(dn["mutability"], "readWrite");
    }
}
