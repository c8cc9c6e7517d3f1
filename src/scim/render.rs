//! The wire form of a stored resource: `schemas`, `id`, attributes and `meta`, with the
//! computed `members` / `groups` lists when they were read.

use serde_json::{Map, Value, json};

use super::json::{Fields, Key};
use super::resource::Body;
use super::schema::{Kind, Rt};

/// One group member as JSON text (for streamed member lists).
pub fn member_fragment(base: &str, id: &str, kind: Kind, display: Option<&str>) -> String {
    let ep = kind.endpoint();
    let r = serde_json::to_string(&format!("{base}/{ep}/{id}")).unwrap_or_default();
    let d = display
        .and_then(|d| serde_json::to_string(d).ok())
        .map(|d| format!(",\"display\":{d}"))
        .unwrap_or_default();
    format!(
        "{{\"value\":\"{id}\"{d},\"type\":\"{}\",\"$ref\":{r}}}",
        kind.as_str()
    )
}

fn refs_name(kind: Kind) -> &'static str {
    if kind == Kind::Group {
        "members"
    } else {
        "groups"
    }
}

/// A group's members or a user's groups, each with its `$ref`.
fn ref_list(kind: Kind, refs: Vec<Value>, base: &str) -> Value {
    let list = refs
        .into_iter()
        .map(|mut r| {
            if let (Some(id), Some(m)) =
                (r["value"].as_str().map(str::to_string), r.as_object_mut())
            {
                let ep = match m.get("type").and_then(Value::as_str) {
                    Some("Group") => "Groups",
                    Some("User") => "Users",
                    _ if kind == Kind::User => "Groups",
                    _ => "Users",
                };
                m.insert("$ref".into(), Value::String(format!("{base}/{ep}/{id}")));
            }
            r
        })
        .collect();
    Value::Array(list)
}

/// A resource as stored (its record's JSON text): written as it is, or decoded for a
/// projection one resource at a time.
#[derive(Debug)]
pub struct Stored {
    pub kind: Kind,
    pub id: String,
    pub record: Vec<u8>,
    pub refs: Option<Vec<Value>>,
}

/// The stored record's layout, borrowing every attribute value as JSON text.
#[derive(serde::Deserialize)]
struct StoredView<'a> {
    #[serde(borrow)]
    body: Fields<'a>,
    #[serde(borrow)]
    created: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    modified: &'a serde_json::value::RawValue,
    version: u64,
}

impl Stored {
    /// The resource the record holds, for a projection to narrow, with only the attributes
    /// `keep` names decoded (`attributes=userName` decodes one value of each record, not
    /// all). `None`: it is not a record; decoding would fail the ordinary way too, which
    /// answers why.
    pub fn into_resource(self, keep: impl Fn(&str) -> bool) -> Option<Resource> {
        let text = std::str::from_utf8(&self.record).ok()?;
        let v: StoredView = serde_json::from_str(text).ok()?;
        let mut body = Body::with_capacity(v.body.0.len());
        for (Key(k), raw) in v.body.0 {
            if keep(&k) {
                body.insert(k.into_owned(), serde_json::from_str(raw.get()).ok()?);
            }
        }
        Some(Resource {
            kind: self.kind,
            id: self.id,
            body,
            created: serde_json::from_str(v.created.get()).ok()?,
            modified: serde_json::from_str(v.modified.get()).ok()?,
            version: v.version,
            refs: self.refs,
        })
    }

    /// The same JSON `Resource::into_json` gives with the default projection, written from
    /// the stored text: a GET by id is mostly this, and parsing the record into a tree only
    /// to print it again was a fifth of its cost. `None` when the record cannot be read
    /// this way (it is not JSON: decoding would fail too); the ETag is returned beside it.
    /// Values of an extension the tenant (`rt`) no longer declares stay stored but unshown.
    pub fn default_json(self, base: &str, rt: Rt) -> Option<(Vec<u8>, String)> {
        let mut out = Vec::with_capacity(self.record.len() + 512);
        let etag = self.write_default_json(&mut out, base, rt)?;
        Some((out, etag))
    }

    /// `default_json` written at the end of `out` (a list page's items go straight into
    /// its answer); the ETag is returned. On `None`, `out` may hold part of the resource.
    pub fn write_default_json(self, out: &mut Vec<u8>, base: &str, rt: Rt) -> Option<String> {
        // Checked as UTF-8 once, whole: parsed from bytes, each value kept as raw text was
        // checked on its own, a fifth of the parse.
        let text = std::str::from_utf8(&self.record).ok()?;
        let v: StoredView = serde_json::from_str(text).ok()?;
        let kind = self.kind;
        // Each value as it is shown: an extension the tenant (`rt`) no longer declares is
        // not, and a tenant's own extension shows only the attributes it declares now (it
        // may have taken some out since this was stored; the built-in ones never do).
        let mut shown: Vec<(&str, std::borrow::Cow<str>)> = Vec::with_capacity(v.body.0.len());
        for (Key(k), r) in &v.body.0 {
            if k == "schemas" || k == "id" {
                continue;
            }
            let text = if !k.starts_with("urn:") {
                std::borrow::Cow::Borrowed(r.get())
            } else {
                match rt.extension(k) {
                    None => continue,
                    Some(ext) if kind.extension(ext.id).is_none() => {
                        let mut m: Map<String, Value> = serde_json::from_str(r.get()).ok()?;
                        super::projection::keep_declared(ext, &mut m);
                        std::borrow::Cow::Owned(serde_json::to_string(&m).ok()?)
                    }
                    Some(_) => std::borrow::Cow::Borrowed(r.get()),
                }
            };
            // As the projection does: an emptied object is left out.
            if text != "{}" {
                shown.push((k.as_ref(), text));
            }
        }
        let etag = etag_of(kind, v.version, self.refs.as_deref());
        let put = |out: &mut Vec<u8>, raw: &str, s: &str| {
            out.extend_from_slice(raw.as_bytes());
            json_string(out, s);
        };
        put(out, "{\"schemas\":[", kind.schema().id);
        for (k, text) in &shown {
            if k.starts_with("urn:") && text.starts_with('{') {
                put(out, ",", k);
            }
        }
        put(out, "],\"id\":", &self.id);
        for (k, text) in &shown {
            put(out, ",", k);
            out.push(b':');
            out.extend_from_slice(text.as_bytes());
        }
        for (name, value) in kind.schema().unset_values() {
            if !v.body.0.iter().any(|(Key(k), _)| k == name) {
                put(out, ",", name);
                out.extend_from_slice(if value { b":true" } else { b":false" });
            }
        }
        if let Some(refs) = self.refs {
            put(out, ",", refs_name(kind));
            out.push(b':');
            serde_json::to_writer(&mut *out, &ref_list(kind, refs, base)).ok()?;
        }
        put(out, ",\"meta\":{\"resourceType\":", kind.as_str());
        out.extend_from_slice(b",\"created\":");
        out.extend_from_slice(v.created.get().as_bytes());
        out.extend_from_slice(b",\"lastModified\":");
        out.extend_from_slice(v.modified.get().as_bytes());
        out.extend_from_slice(b",\"location\":");
        json_string(out, base);
        // The closing quote makes way for the rest of the URL (an endpoint and an id: nothing
        // to escape).
        out.truncate(out.len() - 1);
        for part in ["/", kind.endpoint(), "/", &self.id, "\""] {
            out.extend_from_slice(part.as_bytes());
        }
        put(out, ",\"version\":", &etag);
        out.extend_from_slice(b"}}");
        Some(etag)
    }
}

/// `s` as a JSON string at the end of `out`. Names, ids and URLs seldom need an escape: those
/// are copied between quotes (serde_json's escaping, a table lookup a byte, was 3% of a GET by
/// id).
fn json_string(out: &mut Vec<u8>, s: &str) {
    // Folded without stopping early, so that the compiler can check many bytes at a time.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A resource as read from the store.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: Kind,
    pub id: String,
    pub body: Body,
    pub created: String,
    pub modified: String,
    pub version: u64,
    /// Group members (`{"value","type"}`) or a user's groups (`{"value","display"}`), when read.
    pub refs: Option<Vec<Value>>,
}

/// A resource's weak ETag, also its `meta.version`: `W/"n"` from the stored version. A
/// user's `groups` are not stored with it (a membership is a change of the group, and a
/// group of a million would otherwise rewrite a million users), so a user in groups gets a
/// digest of them as well, `W/"n.xxxxxxxx"`: joining, leaving or a group's rename gives the
/// user a new ETag, and a client never gets 304 for a representation whose `groups` moved.
/// `refs` is the user's groups as read (`None`: not read; only for resources whose version
/// is not shown or compared).
pub fn etag_of(kind: Kind, version: u64, refs: Option<&[Value]>) -> String {
    // Written piece by piece: `format!` here was a visible share of a GET by id.
    let mut tag = String::with_capacity(32);
    tag.push_str("W/\"");
    tag.push_str(itoa::Buffer::new().format(version));
    if let Some(groups) = refs
        && kind == Kind::User
        && !groups.is_empty()
    {
        tag.push('.');
        push_hex8(&mut tag, digest(groups));
    }
    tag.push('"');
    tag
}

/// `d` as eight lower-case hex digits, as `{:08x}` writes it.
fn push_hex8(out: &mut String, d: u32) {
    for shift in (0..8).rev() {
        out.push(char::from(
            b"0123456789abcdef"[(d >> (shift * 4)) as usize & 0xf],
        ));
    }
}

/// FNV-1a over each group's id and name, folded to 32 bits: stable across builds and
/// restarts (an ETag a client holds must stay valid), and cheap beside reading the groups.
fn digest(groups: &[Value]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain([&0xff]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for g in groups {
        for key in ["value", "display"] {
            eat(g.get(key).and_then(Value::as_str).unwrap_or("").as_bytes());
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Whether an `If-Match` or `If-None-Match` value names `etag`: `*` alone, or one of its
/// comma-separated tags, compared weakly (RFC 9110 §8.8.3.2, §13.1). A `*` inside a list is
/// not the grammar's `*` and names nothing. Only spaces and tabs are trimmed: a tag with
/// any other byte beside it names nothing.
pub fn names_etag(header: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    fn ows(s: &str) -> &str {
        s.trim_matches([' ', '\t'])
    }
    ows(header) == "*"
        || header
            .split(',')
            .map(ows)
            .any(|tag| tag.trim_start_matches("W/") == bare)
}

impl Resource {
    /// Weak ETag; also `meta.version` (`etag_of`).
    pub fn etag(&self) -> String {
        etag_of(self.kind, self.version, self.refs.as_deref())
    }

    pub fn location(&self, base: &str) -> String {
        format!("{base}/{}/{}", self.kind.endpoint(), self.id)
    }

    /// `base` is the SCIM base URL the client used (…/scim/v2), for `meta.location` and `$ref`.
    pub fn to_json(&self, base: &str) -> Map<String, Value> {
        self.clone().into_json(base)
    }

    /// As `to_json`, moving the attributes instead of copying them (list pages render
    /// thousands of resources a second).
    pub fn into_json(self, base: &str) -> Map<String, Value> {
        let kind = self.kind;
        let (etag, location) = (self.etag(), self.location(base));
        // Extension objects are the body's URN keys (normalisation keeps only known ones).
        let mut schemas = vec![Value::String(kind.schema().id.to_string())];
        for (k, v) in &self.body {
            if k.starts_with("urn:") && v.is_object() {
                schemas.push(Value::String(k.clone()));
            }
        }
        let mut out = Map::with_capacity(self.body.len() + 4);
        out.insert("schemas".into(), Value::Array(schemas));
        out.insert("id".into(), Value::String(self.id));
        out.extend(self.body);
        // Okta's SPEC test reads `active` from every user; unset, it is active.
        for (name, value) in kind.schema().unset_values() {
            out.entry(name).or_insert(Value::Bool(value));
        }
        if let Some(refs) = self.refs {
            out.insert(refs_name(kind).into(), ref_list(kind, refs, base));
        }
        out.insert(
            "meta".into(),
            json!({
                "resourceType": kind.as_str(),
                "created": self.created,
                "lastModified": self.modified,
                "location": location,
                "version": etag,
            }),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_copied_unescaped_are_what_serde_json_writes() {
        for s in [
            "",
            "userName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "W/\"3\"",
            "back\\slash",
            "tab\there",
            "nul\u{0}",
            "\u{1f}",
            "del\u{7f}",
            "Zoë 😀",
        ] {
            let mut out = b"x".to_vec();
            json_string(&mut out, s);
            assert_eq!(
                out,
                [
                    b"x".as_slice(),
                    serde_json::to_string(s).unwrap().as_bytes()
                ]
                .concat(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn etag_lists_match_weakly_and_by_star() {
        assert!(names_etag("W/\"3\"", "W/\"3\""));
        assert!(names_etag("\"3\"", "W/\"3\""));
        assert!(names_etag("W/\"1\", W/\"3\"", "W/\"3\""));
        assert!(names_etag("*", "W/\"9\""));
        assert!(names_etag(" * ", "W/\"9\""));
        assert!(
            !names_etag("W/\"0\", *", "W/\"9\""),
            "a * in a list is not *"
        );
        assert!(!names_etag("W/\"4\"", "W/\"3\""));
        assert!(!names_etag("W/\"33\"", "W/\"3\""));
    }

    #[test]
    fn a_users_etag_follows_its_groups_and_a_groups_only_its_version() {
        let g = |id: &str, name: &str| json!({"value": id, "display": name, "type": "direct"});
        let one = [g("a1", "Sales")];
        let tag = |kind, refs: Option<&[Value]>| etag_of(kind, 4, refs);
        // No groups, or none read: the plain version, as before groups counted.
        assert_eq!(tag(Kind::User, Some(&[])), "W/\"4\"");
        assert_eq!(tag(Kind::User, None), "W/\"4\"");
        let joined = tag(Kind::User, Some(&one));
        assert!(joined.starts_with("W/\"4.") && joined.len() == "W/\"4.".len() + 9);
        assert_eq!(joined, tag(Kind::User, Some(&one)), "stable");
        // As earlier builds wrote it, zero-padded hex included: a tag a client holds stays
        // valid across an upgrade.
        assert_eq!(joined, format!("W/\"4.{:08x}\"", digest(&one)));
        let mut padded = String::new();
        push_hex8(&mut padded, 0x00ab_c0de);
        assert_eq!(padded, "00abc0de");
        // A rename, another group, or another group's id: another tag.
        let others = [
            vec![g("a1", "Sales EMEA")],
            vec![g("a1", "Sales"), g("b2", "Ops")],
            vec![g("b2", "Sales")],
        ];
        for o in &others {
            assert_ne!(tag(Kind::User, Some(o)), joined, "{o:?}");
        }
        // Where one field ends matters: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            tag(Kind::User, Some(&[g("ab", "c")])),
            tag(Kind::User, Some(&[g("a", "bc")]))
        );
        // A group's members are counted in its stored version already.
        assert_eq!(tag(Kind::Group, Some(&[json!({"value": "u1"})])), "W/\"4\"");
    }
}
