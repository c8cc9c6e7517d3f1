#![no_main]
//! The list query string as the server reads it: `Query::parse` (percent-decoding, `+`,
//! repeated parameters), then `filter` resolved for each type, `sortBy`/`sortOrder` and the
//! projection parameters, as a GET /Users?... would.
//! Input: a kind byte, then the raw query string (after `?`).
//!
//! Oracles: every refusal is a 400 SCIM error; `get` gives back the decoded value of the
//! parameter as given (case-insensitive name). (Parse time is not asserted here: the fuzzer's
//! inputs are too short to show that `Query::parse` is quadratic in the number of
//! parameters; see the report.)

use libfuzzer_sys::fuzz_target;
use scimd::http::query::Query;
use scimd::scim::filter;
use scimd::scim::projection::Projection;
use scimd::scim::schema::Kind;
use scimd::scim::sort::SortSpec;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    if s.len() > 64 * 1024 {
        return;
    }
    let kind = if first & 1 == 0 { Kind::User } else { Kind::Group };
    let q = match Query::parse(Some(s)) {
        Ok(q) => q,
        Err(e) => {
            assert_eq!(e.status, 400, "{s:?}: {e:?}");
            return;
        }
    };
    // The first value given for a name is the one `get` answers (a second, different one
    // was refused above).
    for part in s.split('&').filter(|p| !p.is_empty()).take(8) {
        let (k, _) = part.split_once('=').unwrap_or((part, ""));
        let spaced = k.replace('+', " ");
        let Ok(k) = percent_encoding::percent_decode_str(&spaced).decode_utf8() else { continue };
        assert!(q.get(&k).is_some(), "{k:?} given in {s:?} but not found");
    }
    if let Some(f) = q.get("filter") {
        for k in [Kind::User, Kind::Group] {
            if let Err(e) = filter::parse_for(k, f) {
                assert_eq!(e.status, 400, "{f:?}: {e:?}");
            }
        }
    }
    if let Some(by) = q.get("sortBy") {
        match SortSpec::parse(kind, by, q.get("sortOrder")) {
            Ok(spec) => {
                let body = serde_json::Map::new();
                let _ = spec.key("id1", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", &body);
                let _ = spec.top_key();
            }
            Err(e) => assert_eq!(e.status, 400, "{by:?}: {e:?}"),
        }
    }
    let p = Projection::parse(kind, q.get("attributes"), q.get("excludedAttributes"));
    let _ = p.wants("members");
});
