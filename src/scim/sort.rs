//! `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3): which value a resource sorts by.

use serde_json::Value;

use super::error::{ScimError, ScimResult};
use super::resource::{Body, container};
use super::schema::{AttrDef, AttrRef, AttrType, Returned, Rt, from_the_url, resolve, split_urn};

#[derive(Debug, Clone)]
pub struct SortSpec {
    attr: AttrRef,
    sub: Option<&'static AttrDef>,
    pub descending: bool,
}

/// A sortable value: strings compare case-insensitively unless the attribute is caseExact.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum SortKey {
    Num(f64),
    Text(String),
}

impl SortSpec {
    /// The top-level attribute (core name, or extension URN) the sort key is read from.
    pub fn top_key(&self) -> &'static str {
        self.attr.ext.unwrap_or(self.attr.def.name)
    }

    pub fn parse(
        kind: impl Into<Rt>,
        sort_by: &str,
        sort_order: Option<&str>,
    ) -> ScimResult<SortSpec> {
        let kind: Rt = kind.into();
        let (urn, rest) = split_urn(kind, sort_by.trim());
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let unknown =
            || ScimError::invalid_value(format!("sortBy: unknown attribute \"{sort_by}\""));
        let attr = resolve(kind, urn, name).ok_or_else(unknown)?;
        let sub = match sub {
            Some(s) => Some(attr.def.sub(s).ok_or_else(unknown)?),
            // A multi-valued complex attribute sorts by its primary (else first) `value`.
            None if attr.def.is_complex() => Some(attr.def.sub("value").ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "sortBy: \"{sort_by}\" has sub-attributes and no value of its own; \
                     name one, such as \"{}.{}\"",
                    attr.def.name,
                    attr.def
                        .sub_attributes
                        .first()
                        .map(|s| s.name)
                        .unwrap_or("value")
                ))
            })?),
            None => None,
        };
        if sub.is_some_and(|sd| from_the_url(attr.def, sd)) {
            return Err(ScimError::invalid_value(format!(
                "sortBy: \"{sort_by}\" is made from the request's URL, not stored, so it \
                 cannot be sorted by"
            )));
        }
        // An ETag is opaque (RFC 9110 §8.8.3): it has no order to give, and a client asking for
        // one would otherwise get creation order without being told.
        if sub.is_some_and(|sd| attr.def.name == "meta" && sd.name == "version") {
            return Err(ScimError::invalid_value(
                "sortBy: meta.version is an opaque entity tag with no order; sort by \
                 meta.lastModified instead",
            ));
        }
        // A user's groups and a group's members are not in its record (they come from the
        // membership tables), and a binary value has no order: refused, where they would
        // otherwise leave the list in creation order without saying so.
        if attr.ext.is_none() && matches!(attr.def.name, "groups" | "members") {
            return Err(ScimError::invalid_value(format!(
                "sortBy: \"{sort_by}\" is kept apart from the resource's record (memberships), \
                 so it cannot be sorted by"
            )));
        }
        if sub.unwrap_or(attr.def).ty == super::schema::AttrType::Binary {
            return Err(ScimError::invalid_value(format!(
                "sortBy: \"{sort_by}\" is binary, which has no order"
            )));
        }
        // Sorting by a value never returned would leak its order.
        if [Some(attr.def), sub]
            .into_iter()
            .flatten()
            .any(|d| d.returned == Returned::Never)
        {
            return Err(ScimError::invalid_value(format!(
                "sortBy: \"{sort_by}\" is never returned, so it cannot be sorted by"
            )));
        }
        let descending = descending(sort_order)?;
        Ok(SortSpec {
            attr,
            sub,
            descending,
        })
    }

    /// `id` and `meta.*` live outside the body; the caller passes them in `extra`.
    /// Whether this sorts by the core attribute `name` itself (not a sub-attribute).
    pub fn is_core(&self, name: &str) -> bool {
        self.attr.ext.is_none() && self.attr.def.name == name && self.sub.is_none()
    }

    /// Whether this sorts by `meta.lastModified`.
    pub fn is_last_modified(&self) -> bool {
        self.attr.ext.is_none()
            && self.attr.def.name == "meta"
            && self.sub.is_some_and(|s| s.name == "lastModified")
    }

    pub fn key(&self, id: &str, created: &str, modified: &str, body: &Body) -> Option<SortKey> {
        let def = self.sub.unwrap_or(self.attr.def);
        let v: Value = match (self.attr.ext, self.attr.def.name, self.sub.map(|s| s.name)) {
            (None, "id", _) => Value::String(id.into()),
            (None, "meta", Some("created")) => Value::String(created.into()),
            (None, "meta", Some("lastModified")) => Value::String(modified.into()),
            (None, "meta", _) => return None,
            _ => {
                let c = container(body, self.attr)?;
                // Unset `active` sorts as the responses show it.
                let unset = self.attr.def.unset.map(Value::Bool);
                let v = match (c.get(self.attr.def.name), &unset) {
                    (Some(v), _) => v,
                    (None, Some(d)) => d,
                    (None, None) => return None,
                };
                match (v, self.sub) {
                    (Value::Array(list), Some(sd)) => {
                        let pick = list
                            .iter()
                            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
                            .or(list.first())?;
                        pick.get(sd.name)?.clone()
                    }
                    (Value::Object(m), Some(sd)) => m.get(sd.name)?.clone(),
                    // A multi-valued simple attribute has no primary: its first value.
                    (Value::Array(list), None) => list.first()?.clone(),
                    (v, _) => v.clone(),
                }
            }
        };
        match v {
            Value::Number(n) => n.as_f64().map(SortKey::Num),
            Value::Bool(b) => Some(SortKey::Num(if b { 1.0 } else { 0.0 })),
            Value::String(s) if def.ty == AttrType::DateTime => {
                Some(SortKey::Text(time_order(&s).unwrap_or(s)))
            }
            Value::String(s) if def.case_exact => Some(SortKey::Text(s)),
            Value::String(s) => Some(SortKey::Text(crate::scim::fold::fold(&s))),
            _ => None,
        }
    }
}

/// A dateTime as text that sorts in time order: in UTC, with nine fractional digits.
/// As sent, `…00.5Z` sorts after `…00.50001Z`, and offsets other than `Z` sort anywhere.
pub fn time_order(s: &str) -> Option<String> {
    crate::scim::datetime::parse(s).map(fixed_width)
}

/// The sort key of a time given in Unix nanoseconds (as the lastModified index holds it).
pub fn time_order_nanos(n: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .ok()
        .map(fixed_width)
}

fn fixed_width(t: time::OffsetDateTime) -> String {
    // A time valid in its own offset can fall past year 9999 in UTC (`9999-12-31T23:59:59-01:00`):
    // it sorts after every time that does not.
    let Some(t) = t.checked_to_offset(time::UtcOffset::UTC) else {
        return "9999-99".to_string();
    };
    utc_text(t, 9)
}

/// `t` (in UTC) as RFC 3339 with exactly `digits` fractional digits (at most 9), cut, not
/// rounded.
pub fn utc_text(t: time::OffsetDateTime, digits: u32) -> String {
    let digits = digits.min(9);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:0w$}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 10u32.pow(9 - digits),
        w = digits as usize
    )
}

/// Whether `sortOrder` asks for descending order; anything but the two words is refused,
/// with `sortBy` or without it (a typo must not pass unnoticed until a `sortBy` is added).
pub fn descending(sort_order: Option<&str>) -> ScimResult<bool> {
    match sort_order.map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(o) if o.is_empty() || o == "ascending" => Ok(false),
        Some(o) if o == "descending" => Ok(true),
        Some(o) => Err(ScimError::invalid_value(format!(
            "sortOrder must be \"ascending\" or \"descending\", got \"{o}\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_year_9999_in_utc_sorts_last_instead_of_panicking() {
        let late = time_order("9999-12-31T23:59:59-01:00").unwrap();
        assert!(late > time_order("9999-12-31T23:59:59Z").unwrap(), "{late}");
    }

    #[test]
    fn times_sort_in_time_order_whatever_their_digits_and_offset() {
        let sort =
            SortSpec::parse(super::super::schema::Kind::User, "meta.lastModified", None).unwrap();
        let key = |m: &str| sort.key("id", "", m, &Body::new()).unwrap();
        let order = [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:00.50001Z",
            "2026-01-01T02:00:01+02:00",
            "2026-01-01T00:00:02.1Z",
        ];
        for w in order.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} before {}", w[0], w[1]);
        }
        assert_eq!(
            key("2026-01-01T02:00:01+02:00"),
            SortKey::Text("2026-01-01T00:00:01.000000000Z".into())
        );
    }

    #[test]
    fn what_is_made_from_the_url_cannot_be_sorted_by() {
        use super::super::schema::{ENTERPRISE_SCHEMA, Kind};
        for (kind, by) in [
            (Kind::User, "meta.location".to_string()),
            (Kind::User, "groups.$ref".into()),
            (Kind::User, format!("{ENTERPRISE_SCHEMA}:manager.$ref")),
            (Kind::Group, "members.$ref".into()),
        ] {
            let e = SortSpec::parse(kind, &by, None).unwrap_err();
            assert!(e.detail.contains("not stored"), "{by}: {}", e.detail);
        }
        assert!(SortSpec::parse(Kind::User, "meta.created", None).is_ok());
    }

    #[test]
    fn memberships_and_binary_values_cannot_be_sorted_by() {
        use super::super::schema::Kind;
        for (kind, by, why) in [
            (Kind::User, "groups.display", "kept apart"),
            (Kind::User, "groups", "kept apart"),
            (Kind::Group, "members.value", "kept apart"),
            (Kind::User, "x509Certificates", "binary"),
        ] {
            let e = SortSpec::parse(kind, by, None).unwrap_err();
            assert!(e.detail.contains(why), "{by}: {}", e.detail);
        }
    }

    #[test]
    fn a_complex_attribute_without_a_value_asks_for_a_sub_attribute() {
        use super::super::schema::Kind;
        let e = SortSpec::parse(Kind::User, "name", None).unwrap_err();
        assert!(e.detail.contains("\"name.formatted\""), "{}", e.detail);
        assert!(SortSpec::parse(Kind::User, "name.familyName", None).is_ok());
        // A multi-valued one sorts by its primary value.
        assert!(SortSpec::parse(Kind::User, "emails", None).is_ok());
    }

    #[test]
    fn an_etag_has_no_order() {
        use super::super::schema::Kind;
        for (kind, by) in [(Kind::User, "meta.version"), (Kind::Group, "Meta.Version")] {
            let e = SortSpec::parse(kind, by, None).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.detail.contains("meta.lastModified"), "{by}: {}", e.detail);
        }
    }

    #[test]
    fn an_unset_active_sorts_as_true() {
        let sort = SortSpec::parse(super::super::schema::Kind::User, "active", None).unwrap();
        let key = |b: serde_json::Value| {
            let Value::Object(m) = b else { unreachable!() };
            sort.key("id", "", "", &m)
        };
        let (unset, off, on) = (
            key(serde_json::json!({})),
            key(serde_json::json!({"active": false})),
            key(serde_json::json!({"active": true})),
        );
        assert_eq!(unset, on);
        assert!(off < unset);
    }
}
