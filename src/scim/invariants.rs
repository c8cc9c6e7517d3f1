//! What must hold for any input at all, one function per fuzz target (`fuzz/`). Each takes
//! raw bytes and panics only when an invariant breaks; the fuzzers call these, and the unit
//! test below replays the saved corpora under plain `cargo test`.

use serde_json::Value;

use super::error::ScimType;
use super::schema::Kind;
use super::{filter, patch, path, resource};

/// Inputs longer than any request limit allows are not interesting.
const MAX_INPUT: usize = 64 * 1024;

fn text(data: &[u8]) -> Option<&str> {
    (data.len() <= MAX_INPUT)
        .then(|| std::str::from_utf8(data).ok())
        .flatten()
}

fn kind_and_json(data: &[u8]) -> Option<(Kind, Value)> {
    let (first, rest) = data.split_first()?;
    let kind = if first & 1 == 0 {
        Kind::User
    } else {
        Kind::Group
    };
    Some((kind, serde_json::from_str(text(rest)?).ok()?))
}

/// A filter either parses and prints as text that parses back to the same printed text, or
/// is refused as `invalidFilter` (parsing regroups `and` and `or` chains, so the trees may
/// differ in grouping only); once resolved against the User schema, the printed form answers
/// as the original does.
pub fn filter(data: &[u8]) {
    let Some(s) = text(data) else { return };
    // Escapes may make the printed text longer than the input, never deeper.
    let unlimited_length = filter::Limits {
        max_len: usize::MAX,
        ..filter::Limits::default()
    };
    match filter::parse(s) {
        Ok(f) => {
            let printed = f.to_string();
            assert_eq!(
                filter::parse_with(&printed, unlimited_length).map(|g| g.to_string()),
                Ok(printed.clone()),
                "{s:?} printed as {printed:?} does not parse back"
            );
        }
        Err(e) => assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{s:?}: {e:?}"),
    }
    if let Ok(f) = filter::parse_for(Kind::User, s) {
        let user = serde_json::json!({"userName": "a@b.c", "emails": [{"value": "a@b.c", "type": "work"}],
            "name": {"givenName": "A"}, "active": true, "meta": {"created": "2026-01-01T00:00:00Z"}});
        let printed = f.to_string();
        let again = filter::parse_for_with(Kind::User, &printed, unlimited_length)
            .unwrap_or_else(|e| panic!("{s:?} resolved and printed as {printed:?}: {e:?}"));
        assert_eq!(
            filter::matches(&f, Kind::User, &user),
            filter::matches(&again, Kind::User, &user),
            "{s:?} and {printed:?}"
        );
    }
}

/// A PATCH path is known, unknown (ignored by policy) or refused as `invalidPath` or
/// `invalidFilter`; never anything else.
pub fn path(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Some(s) = text(rest) else { return };
    let kind = if first & 1 == 0 {
        Kind::User
    } else {
        Kind::Group
    };
    if let Err(e) = path::parse(kind, s) {
        assert!(
            matches!(
                e.scim_type,
                Some(ScimType::InvalidPath | ScimType::InvalidFilter | ScimType::NoTarget)
            ),
            "{s:?}: {e:?}"
        );
        assert_eq!(e.status, 400, "{s:?}: {e:?}");
    }
}

fn base_body(kind: Kind) -> resource::Body {
    let raw = match kind {
        Kind::User => serde_json::json!({"userName": "a@b.c", "active": true,
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}}),
        Kind::Group => serde_json::json!({"displayName": "Staff"}),
    };
    resource::normalize(kind, &raw).expect("base body").body
}

/// A PATCH request either fails with a 4xx SCIM error, or gives a body that is already in
/// canonical form (normalising it again changes nothing).
pub fn patch(data: &[u8]) {
    let Some((kind, raw)) = kind_and_json(data) else {
        return;
    };
    let ops = match patch::parse_request(&raw) {
        Ok(ops) => ops,
        Err(e) => {
            assert!((400..500).contains(&e.status), "{raw}: {e:?}");
            return;
        }
    };
    match patch::apply(
        kind,
        "2f1e0c9a-0000-7000-8000-000000000001",
        &base_body(kind),
        &ops,
    ) {
        Ok(out) => canonical(kind, &out.body),
        Err(e) => assert!((400..500).contains(&e.status), "{raw}: {e:?}"),
    }
}

/// A resource body either normalises to a canonical body or is refused with a 4xx error.
pub fn resource(data: &[u8]) {
    let Some((kind, raw)) = kind_and_json(data) else {
        return;
    };
    match resource::normalize(kind, &raw) {
        Ok(input) => {
            canonical(kind, &input.body);
            let _ = resource::check_required(kind, &input.body);
            let _ = resource::check_required_extensions(kind, &input.body, None);
        }
        Err(e) => assert!((400..500).contains(&e.status), "{raw}: {e:?}"),
    }
}

fn canonical(kind: Kind, body: &resource::Body) {
    let again = resource::normalize(kind, &Value::Object(body.clone()))
        .unwrap_or_else(|e| panic!("canonical body refused: {e:?}: {body:?}"));
    assert_eq!(&again.body, body, "normalising a canonical body changed it");
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every saved input (corpus and past crashes) still passes.
    #[test]
    fn saved_fuzz_inputs_replay() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 4] = [
            ("filter", super::filter),
            ("path", super::path),
            ("patch", super::patch),
            ("resource", super::resource),
        ];
        let mut replayed = 0;
        for (name, check) in targets {
            for dir in ["corpus", "artifacts", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in entries.flatten() {
                    // A running fuzzer may remove a file between listing and reading.
                    let Ok(data) = std::fs::read(e.path()) else {
                        continue;
                    };
                    let res = std::panic::catch_unwind(|| check(&data));
                    assert!(res.is_ok(), "{name}: {} fails", e.path().display());
                    replayed += 1;
                }
            }
        }
        assert!(
            replayed >= 4,
            "the saved corpora are missing ({replayed} files)"
        );
    }
}
