//! A Group's `members` as given, read into `{"value", "type"?, "display"?}` objects; the
//! store keeps them apart from the body.

use serde_json::{Map, Value};

use super::values::{normalize_simple, type_name};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::Kind;

/// A member's `display` held to a string attribute's rules (text, no NUL or control
/// character: applications show it); blank is none.
fn display(v: &Value) -> ScimResult<Option<String>> {
    let Some(def) = Kind::Group
        .schema()
        .attr("members")
        .and_then(|m| m.sub("display"))
    else {
        return Ok(None);
    };
    Ok(normalize_simple(def, v, "members.display")?
        .and_then(|d| d.as_str().map(str::to_string))
        .filter(|d| !d.trim().is_empty()))
}

/// Group members as given: a list of `{"value": id, "type"?: "User"|"Group", "display"?}`
/// (a bare id string is read as `{"value": id}`; a blank `display` is none).
pub fn normalize_members(value: &Value) -> ScimResult<Vec<Value>> {
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (id, ty, display) = match item {
            Value::String(s) => (s.as_str(), None, None),
            Value::Object(o) => {
                let field = |n: &str| {
                    o.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v)
                };
                let Some(Value::String(id)) = field("value") else {
                    return Err(ScimError::invalid_value(
                        "each group member needs a \"value\" holding the member's id",
                    ));
                };
                let ty = match field("type") {
                    Some(Value::String(t)) if t.eq_ignore_ascii_case("user") => Some("User"),
                    Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => Some("Group"),
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) if t.is_empty() => None,
                    Some(other) => {
                        return Err(ScimError::invalid_value(format!(
                            "member type must be \"User\" or \"Group\", got {other}"
                        )));
                    }
                };
                let display = match field("display") {
                    Some(d) => display(d)?,
                    None => None,
                };
                (id.as_str(), ty, display)
            }
            other => {
                return Err(ScimError::invalid_value(format!(
                    "a group member must be an object with a \"value\", got {}",
                    type_name(other)
                )));
            }
        };
        let mut m = Map::new();
        m.insert("value".into(), Value::String(id.to_string()));
        if let Some(t) = ty {
            m.insert("type".into(), Value::String(t.into()));
        }
        if let Some(d) = display {
            m.insert("display".into(), Value::String(d));
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::scim::resource::normalize;
    use crate::scim::schema::Kind;
    use serde_json::json;

    #[test]
    fn group_members_are_kept_apart() {
        let raw = json!({"displayName": "G", "members": [
            {"value": "1", "type": "user", "Display": "Ann"}, "2", {"value": "3", "display": " "}]});
        let got = normalize(Kind::Group, &raw).unwrap();
        assert!(!got.body.contains_key("members"));
        assert_eq!(
            got.members.unwrap(),
            vec![
                json!({"value": "1", "type": "User", "display": "Ann"}),
                json!({"value": "2"}),
                json!({"value": "3"})
            ]
        );
        // Text without control characters, as for a name.
        for bad in [json!(7), json!("a\u{0}b"), json!("a\nb"), json!({"x": 1})] {
            let raw = json!({"displayName": "G", "members": [{"value": "1", "display": bad}]});
            let e = normalize(Kind::Group, &raw).unwrap_err();
            assert!(e.detail.contains("members.display"), "{}", e.detail);
        }
    }
}
