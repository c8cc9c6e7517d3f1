//! A stored resource record: its JSON encoding, its times, and the index keys its body
//! produces.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format_id;
use super::skim::skim;
use crate::scim::fold::fold;
use crate::scim::render::Resource;
use crate::scim::resource::{self, Body};
use crate::scim::schema::{Kind, Rt};

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) body: Body,
    pub(super) created: String,
    pub(super) modified: String,
    pub(super) version: u64,
}

impl Record {
    pub(super) fn into_resource(self, kind: Kind, id: u128) -> Resource {
        Resource {
            kind,
            id: format_id(id),
            body: self.body,
            created: self.created,
            modified: self.modified,
            version: self.version,
            refs: None,
        }
    }
}

/// Hands out the times of changes, in Unix microseconds: the clock's, and always after every
/// time handed out before, so that the changes of one batch (which commits many within a
/// microsecond) still have distinct, ordered times.
struct Clock(AtomicI64);

impl Clock {
    fn next(&self, clock: i64) -> i64 {
        let mut last = self.0.load(Ordering::Relaxed);
        loop {
            let next = clock.max(last.saturating_add(1));
            match self
                .0
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if next - clock > AHEAD_SAID {
                        held_ahead(next, clock);
                    }
                    return next;
                }
                Err(seen) => last = seen,
            }
        }
    }
}

static CLOCK: Clock = Clock(AtomicI64::new(0));

/// How far ahead of the clock handed-out times may be held before it is said (µs).
const AHEAD_SAID: i64 = 60_000_000;

/// When `held_ahead` last spoke (Unix seconds).
static AHEAD_SAID_AT: AtomicI64 = AtomicI64::new(0);

/// Times are held ahead of a clock set back from a time it had run ahead to (booted before
/// NTP, set by hand): said once an hour, as it lasts until the clock catches up.
fn held_ahead(held: i64, clock: i64) {
    let now = clock.div_euclid(1_000_000);
    let said = AHEAD_SAID_AT.load(Ordering::Relaxed);
    if now.abs_diff(said) >= 3600
        && AHEAD_SAID_AT
            .compare_exchange(said, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            held = %format_micros(held),
            "the clock is behind times already given to changes (it ran ahead, and was set back): created and lastModified are held past them, as clients that sync by lastModified must not see it go back, until the clock passes them; ids sort after them too (said once an hour)"
        );
    }
}

/// Hand out times past `micros` from now on (the latest stored, at start).
pub(super) fn hold_clock_past(micros: i64) {
    CLOCK.0.fetch_max(micros, Ordering::Relaxed);
}

/// The time a new id carries: the clock's, or past every time handed out when the clock is
/// behind them, so that ids sort as the changes' times do (lists are in creation order).
pub(super) fn id_micros() -> i64 {
    clock_micros().max(CLOCK.0.load(Ordering::Relaxed))
}

/// The clock, in Unix microseconds.
pub(super) fn clock_micros() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0)
}

/// The time of a change.
pub(super) fn now() -> String {
    format_micros(CLOCK.next(clock_micros()))
}

/// A new lastModified for a resource last changed at `was`: later than `was` even when the
/// clock is not (it was set back, or `was` came from another machine by import), so that
/// lastModified advances on every change, as clients that sync by it rely on. (Only this
/// resource's time moves past `was`: one odd time must not carry every later change along.)
pub(super) fn after(was: &str) -> String {
    let next = CLOCK.next(clock_micros());
    let floor = stamp_nanos(was).map_or(i64::MIN, |n| n.div_euclid(1000).saturating_add(1));
    format_micros(next.max(floor))
}

/// The times an imported resource keeps, as scimd writes times (UTC, six digits): one that
/// is missing or not a date-time takes the other's, both the import's time when neither is
/// one, and lastModified is never before created.
pub(super) fn imported_times(created: Option<&str>, modified: Option<&str>) -> (String, String) {
    let micros = |s: Option<&str>| s.and_then(stamp_nanos).map(|n| n.div_euclid(1000));
    let (c, m) = (micros(created), micros(modified));
    match (c.or(m), m.or(c)) {
        (Some(c), Some(m)) => (format_micros(c), format_micros(m.max(c))),
        _ => {
            let stamp = now();
            (stamp.clone(), stamp)
        }
    }
}

/// RFC 3339 in UTC with exactly six fractional digits: clients parse that everywhere (.NET
/// reads at most seven digits, Python before 3.11 only three or six; nanoseconds were nine).
fn format_micros(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    crate::scim::sort::utc_text(t, 6)
}

/// A time as the lastModified index holds it: Unix nanoseconds.
pub(super) fn stamp_nanos(s: &str) -> Option<i64> {
    let t = crate::scim::datetime::parse(s)?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// The lastModified index key of a stored record.
pub(super) fn stored_stamp(bytes: &[u8]) -> Option<i64> {
    skim(bytes, &["meta"]).and_then(|s| stamp_nanos(&s.modified))
}

/// Whether the lastModified index holds this kind (see `MODIFIED_ID`).
pub(super) fn stamps_indexed(kind: Kind) -> bool {
    kind == Kind::User
}

pub(super) fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
    serde_json::from_slice(bytes).ok()
}

/// Why a stored record does not decode: its bytes were changed from outside (a failing
/// disk, a stray write), as nothing scimd writes fails to decode. Checked at a skim's cost
/// (the scrub's pass at start, which writes wait for, reads a million of them): the text
/// UTF-8 throughout (stepping over a string does not look), JSON, and a record's fields with
/// their types; the body an object whose values are any JSON, as decoding takes them.
pub(super) fn undecodable(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        body: AnyObject,
        created: String,
        modified: String,
        version: u64,
    }
    /// A JSON object, its members stepped over.
    struct AnyObject;
    impl<'de> Deserialize<'de> for AnyObject {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Members;
            impl<'de> serde::de::Visitor<'de> for Members {
                type Value = AnyObject;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<AnyObject, A::Error> {
                    while map
                        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                        .is_some()
                    {}
                    Ok(AnyObject)
                }
            }
            d.deserialize_map(Members)
        }
    }
    std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<Shape>(text).map_err(|e| e.to_string()))
        .err()
        .map(|e| format!("a stored record does not parse ({e})"))
}

/// `decode` for a read that found the record under its key: one that does not decode is
/// damage, redb's error for it, not a resource that is gone.
pub(super) fn decoded(bytes: &[u8]) -> Result<Record, redb::Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| redb::Error::Corrupted(format!("a stored record does not parse ({e})")))
}

/// The index entries a resource body produces.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Keys {
    pub(super) username: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) emails: BTreeSet<String>,
    pub(super) display: Option<String>,
    /// ("urn:...:attr", value) of declared extension attributes with `uniqueness: server`.
    pub(super) unique: BTreeSet<(String, String)>,
    /// The other spellings of each whole number among `unique` ("5.0" for "5", and back;
    /// zero has two): a number is one value however it was written, and entries keep the
    /// spelling their holder was stored with, so a write looks them all up.
    pub(super) other_spellings: BTreeSet<(String, String)>,
}

pub(super) fn keys(rt: impl Into<Rt>, body: &Body) -> Keys {
    keys_folded(rt, body, fold)
}

/// The index entries a body produces with names folded by `fold` (an earlier layout's fold,
/// for its migration).
pub(super) fn keys_folded(rt: impl Into<Rt>, body: &Body, fold: fn(&str) -> String) -> Keys {
    let rt: Rt = rt.into();
    let kind = rt.kind;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut k = Keys {
        external_id: s("externalId"),
        display: s("displayName").map(|d| fold(&d)),
        ..Keys::default()
    };
    for ext in rt.extensions() {
        let Some(inner) = body.get(ext.id).and_then(Value::as_object) else {
            continue;
        };
        for def in ext
            .attributes
            .iter()
            .filter(|d| d.uniqueness == crate::scim::schema::Uniqueness::Server)
        {
            let v = match inner.get(def.name) {
                Some(Value::String(s)) if def.case_exact => s.clone(),
                // Lowercased, not folded: the name migrations cannot tell which stored
                // values came from attributes that are not caseExact.
                Some(Value::String(s)) => s.to_lowercase(),
                Some(Value::Number(n)) => {
                    for other in other_spellings(n) {
                        k.other_spellings
                            .insert((format!("{}:{}", ext.id, def.name), other));
                    }
                    n.to_string()
                }
                Some(Value::Bool(b)) => b.to_string(),
                _ => continue,
            };
            k.unique.insert((format!("{}:{}", ext.id, def.name), v));
        }
    }
    if kind == Kind::User {
        k.username = s("userName").map(|u| fold(&u));
        k.emails.extend(resource::email_values(body).map(fold));
    }
    k
}

/// The other spellings of a whole number as JSON writes them: `5.0` for `5` and `5` for
/// `5.0`; zero has three (`0`, `0.0`, and `-0.0`, as JSON's `-0` reads), each the other two.
/// None for a number with a fraction, or past 2^53, where a double no longer holds every
/// whole number.
fn other_spellings(n: &serde_json::Number) -> Vec<String> {
    const EXACT: u64 = 1 << 53;
    let whole = match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Some(i).filter(|i| i.unsigned_abs() <= EXACT),
        (None, Some(_)) => None, // past i64, so past 2^53
        (None, None) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT as f64)
            .map(|f| f as i64),
    };
    let Some(i) = whole else {
        return Vec::new();
    };
    let own = n.to_string();
    [format!("{i}"), format!("{i}.0")]
        .into_iter()
        .chain((i == 0).then(|| "-0.0".to_string()))
        .filter(|s| *s != own)
        .collect()
}

/// The (attribute, value) pairs of `body` the tenant's unique attributes hold, as a write
/// indexes them, each with every spelling a write looks it up under (its own first; `5` and
/// `5.0` for a whole number): what an import checks its file and the tenant for.
pub fn unique_values(rt: Rt, body: &Body) -> Vec<(String, String, Vec<String>)> {
    let k = keys(rt, body);
    k.unique
        .into_iter()
        .map(|(attr, v)| {
            let others = k.other_spellings.iter().filter(|(a, _)| *a == attr);
            let spellings = std::iter::once(v.clone())
                .chain(others.map(|(_, o)| o.clone()))
                .collect();
            (attr, v, spellings)
        })
        .collect()
}

/// Whether `rec`, the resource a unique-index entry names, still holds the entry's value
/// `(attr, v)` as `rt` declares its attributes now (`case_exact` included): an entry whose
/// resource no longer does refuses nothing.
pub(super) fn holds_unique(rec: Option<Record>, rt: Rt, attr: &str, v: &str) -> bool {
    rec.is_some_and(|r| {
        keys(rt, &r.body)
            .unique
            .contains(&(attr.to_string(), v.to_string()))
    })
}

/// Every unique-index entry the tenant's own extension values in `body` could have made,
/// whatever is declared now. An extension taken out of the configuration, or an attribute
/// no longer unique, leaves the entries made while it was: a write that drops or changes
/// such a value takes them out (those naming the resource), or the value would stay taken.
pub(super) fn unique_candidates(kind: Kind, body: &Body) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (urn, v) in body.iter() {
        let Some(inner) = v
            .as_object()
            .filter(|_| urn.starts_with("urn:") && kind.extension(urn).is_none())
        else {
            continue;
        };
        for (name, v) in inner {
            let attr = format!("{urn}:{name}");
            match v {
                // As `keys_folded` writes a value: as sent, or lowercased.
                Value::String(s) => {
                    out.insert((attr.clone(), s.to_lowercase()));
                    out.insert((attr, s.clone()));
                }
                Value::Number(n) => {
                    out.insert((attr, n.to_string()));
                }
                Value::Bool(b) => {
                    out.insert((attr, b.to_string()));
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scrub's skim refuses what a read's decode refuses, and takes what it takes.
    #[test]
    fn a_skim_of_a_record_agrees_with_its_decode() {
        let times = r#""created":"2025-12-04T14:55:41.000042Z","modified":"2025-12-04T14:55:41.000042Z","version":3"#;
        for (body, sound) in [
            (
                r#"{"userName":"a","emails":[{"value":"a@x"}],"active":true}"#,
                true,
            ),
            ("{}", true),
            (r#"["userName","a"]"#, false),
            (r#""a""#, false),
            ("null", false),
            ("7", false),
        ] {
            let record = format!(r#"{{"body":{body},{times}}}"#);
            assert_eq!(decode(record.as_bytes()).is_some(), sound, "{record}");
            assert_eq!(undecodable(record.as_bytes()).is_none(), sound, "{record}");
        }
    }

    #[test]
    fn times_have_six_fractional_digits_and_always_advance() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micros(1_764_860_141_000_042),
            "2025-12-04T14:55:41.000042Z"
        );
        let times: Vec<String> = (0..10_000).map(|_| now()).collect();
        for pair in times.windows(2) {
            assert_eq!(pair[1].len(), "2025-12-04T14:55:41.000042Z".len());
            assert!(stamp_nanos(&pair[0]) < stamp_nanos(&pair[1]), "{pair:?}");
        }
        // A clock that stands still or goes back still hands out later times.
        let c = Clock(AtomicI64::new(0));
        assert_eq!(
            [c.next(50), c.next(50), c.next(10), c.next(60)],
            [50, 51, 52, 60]
        );
        // A resource last changed "in the future" (a clock set back, an import from another
        // machine) still gets a later lastModified; nine digits, as earlier versions wrote,
        // are read to the nanosecond.
        assert_eq!(
            after("2200-01-01T00:00:00.999999Z"),
            "2200-01-01T00:00:01.000000Z"
        );
        assert_eq!(
            after("2200-01-01T00:00:02.123456789Z"),
            "2200-01-01T00:00:02.123457Z"
        );
        // Imported times are written as scimd writes them; a missing or broken one takes
        // the other's, and lastModified is never before created.
        assert_eq!(
            imported_times(
                Some("2026-06-07T09:09:10.5+01:00"),
                Some("2026-06-08T00:00:00Z")
            ),
            (
                "2026-06-07T08:09:10.500000Z".to_string(),
                "2026-06-08T00:00:00.000000Z".to_string()
            )
        );
        let day = "2026-01-01T00:00:00.000000Z".to_string();
        assert_eq!(
            imported_times(Some("04-12-2018 00:00:00"), Some(&day)),
            (day.clone(), day.clone())
        );
        assert_eq!(imported_times(Some(&day), None), (day.clone(), day.clone()));
        assert_eq!(
            imported_times(Some("2026-02-01T00:00:00Z"), Some(&day)).1,
            "2026-02-01T00:00:00.000000Z"
        );
        let (c, m) = imported_times(None, Some("yesterday"));
        assert!(c == m && c.starts_with("20"), "{c} {m}");
        // ... without carrying the next change's time along.
        assert!(now().starts_with("20"), "{}", now());
        assert!(now().as_str() < "2200");
    }
}
