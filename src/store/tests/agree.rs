//! Randomly made filters, each answered by the store (index plans, the stored-text fast
//! path, cursor pages, sorted pages) and by evaluating it on every user or group as a GET
//! returns it: the answers must agree. The planner has many shortcuts (exact points, prefixes, ranges, group
//! members, `and`s of them); this looks for one that gives a different set than the
//! filter's meaning.

use super::*;
use crate::scim::filter;
use serde_json::{Value, json};

/// xorshift64*: deterministic, so that a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Names that fold, sort and prefix in interesting ways: case, accents, sharp s, Greek
/// final sigma, digits, and one that is a prefix of another.
const STEMS: [&str; 12] = [
    "al",
    "Al",
    "ALICE",
    "bo",
    "Bö",
    "böb",
    "ΟΔΥΣΣΕΑΣ",
    "straße",
    "STRASSE",
    "z",
    "Zoë",
    "9lives",
];
const DOMAINS: [&str; 3] = ["a.example", "B.Example", "ö.example"];
const TITLES: [&str; 4] = ["Engineer", "engineer", "Sales Lead", "Ärztin"];
const FAMILIES: [&str; 3] = ["Smith", "smith", "Øster"];

/// A user's attributes, some left out so that `pr` and absent values are exercised.
fn user(i: usize, r: &mut Rng) -> Value {
    let name = format!("{}{i}", r.pick(&STEMS));
    let mut u = json!({"userName": name});
    if !r.chance(4) {
        // externalId is case-exact: two users may differ only in case.
        let ext = if r.chance(2) { "X" } else { "x" };
        u["externalId"] = json!(format!("{ext}{}", i % 97));
    }
    if !r.chance(3) {
        let n = 1 + r.below(2);
        let emails: Vec<Value> = (0..n)
            .map(|k| {
                json!({"value": format!("{}.{k}@{}", name.to_lowercase(), r.pick(&DOMAINS)),
                       "type": if k == 0 { "work" } else { "home" }, "primary": k == 0})
            })
            .collect();
        u["emails"] = json!(emails);
    }
    if r.chance(2) {
        u["title"] = json!(r.pick(&TITLES));
    }
    if !r.chance(4) {
        u["active"] = json!(r.chance(2));
    }
    if r.chance(2) {
        u["displayName"] = json!(format!("{} {}", r.pick(&STEMS), i % 5));
    }
    if r.chance(2) {
        u["name"] = json!({"familyName": r.pick(&FAMILIES)});
    }
    u
}

/// Some text from `s`: all of it, a prefix, a suffix or a middle, in its case or another.
fn part_of(s: &str, r: &mut Rng) -> String {
    let chars: Vec<char> = s.chars().collect();
    let a = r.below(chars.len().max(1));
    let b = a + 1 + r.below(chars.len() - a);
    let cut: String = match r.below(4) {
        0 => chars.iter().collect(),
        1 => chars[..b].iter().collect(),
        2 => chars[a..].iter().collect(),
        _ => chars[a..b].iter().collect(),
    };
    match r.below(3) {
        0 => cut.to_uppercase(),
        1 => cut.to_lowercase(),
        _ => cut,
    }
}

/// `part_of` one of `from`.
fn piece(from: &[impl AsRef<str>], r: &mut Rng) -> String {
    let whole = from[r.below(from.len())].as_ref().to_string();
    part_of(&whole, r)
}

/// What the generated filters compare against: values the users hold.
struct Seen {
    names: Vec<String>,
    emails: Vec<String>,
    externals: Vec<String>,
    ids: Vec<String>,
    times: Vec<String>,
    /// Ids of the other kind: groups for a user's filters, users for a group's.
    others: Vec<String>,
}

fn quoted(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap()
}

/// A comparison operator, those that order strings now and then.
fn op(r: &mut Rng) -> &'static str {
    const ORDER: [&str; 6] = ["eq", "sw", "gt", "ge", "lt", "le"];
    const TEXT: [&str; 5] = ["eq", "ne", "co", "sw", "ew"];
    if r.chance(3) {
        r.pick::<&str>(&ORDER)
    } else {
        r.pick::<&str>(&TEXT)
    }
}

/// `id` or `meta.created`/`meta.lastModified` compared with a value some resource has.
fn id_or_time(s: &Seen, r: &mut Rng) -> String {
    if r.chance(3) {
        return format!("id eq {}", quoted(r.pick(&s.ids)));
    }
    let which = if r.chance(2) {
        "lastModified"
    } else {
        "created"
    };
    let cmp = *r.pick(&["gt", "ge", "lt", "le", "eq"]);
    format!("meta.{which} {cmp} {}", quoted(r.pick(&s.times)))
}

/// A comparison an index answers: a value the resources hold (`of`, for each attribute),
/// whole or cut to a prefix, in its case or another, mostly with `sw`. These are where the
/// planner folds, cuts and ranges, so they are made more often than chance would.
fn indexed_term(of: &[(&str, &[String])], r: &mut Rng) -> String {
    let (attr, values) = r.pick(of);
    let value = r.pick(values).clone();
    let chars: Vec<char> = value.chars().collect();
    let cut: String = chars[..1 + r.below(chars.len().max(1))].iter().collect();
    let (op, v) = match r.below(6) {
        0 => ("eq", value),
        1 => (*r.pick(&["gt", "ge", "lt", "le"]), cut),
        _ => ("sw", cut),
    };
    let v = match r.below(3) {
        0 => v.to_uppercase(),
        1 => v.to_lowercase(),
        _ => v,
    };
    // A value path (`emails[value`) is closed after its value.
    let close = if attr.contains('[') { "]" } else { "" };
    format!("{attr} {op} {}{close}", quoted(v))
}

/// One comparison on an attribute a group may have.
fn group_term(s: &Seen, r: &mut Rng) -> String {
    match r.below(10) {
        8 | 9 => indexed_term(
            &[("displayName", &s.names), ("externalId", &s.externals)],
            r,
        ),
        0..=2 => format!("displayName {} {}", op(r), quoted(piece(&s.names, r))),
        3 => match r.below(3) {
            0 => "externalId pr".to_string(),
            _ => format!("externalId {} {}", op(r), quoted(piece(&s.externals, r))),
        },
        4 | 5 => {
            let m = quoted(r.pick(&s.others));
            match r.below(4) {
                0 => format!("members.value eq {m}"),
                1 => format!("members[value eq {m}]"),
                2 => "members pr".to_string(),
                _ => format!(
                    "members[value eq {m} or value eq {}]",
                    quoted(r.pick(&s.others))
                ),
            }
        }
        _ => id_or_time(s, r),
    }
}

/// One comparison on an attribute a user may have.
fn user_term(s: &Seen, r: &mut Rng) -> String {
    match r.below(17) {
        13..=16 => indexed_term(
            &[
                ("userName", &s.names),
                ("emails.value", &s.emails),
                ("emails[value", &s.emails),
                ("externalId", &s.externals),
            ],
            r,
        ),
        0..=3 => {
            let v = piece(&s.names, r);
            format!("userName {} {}", op(r), quoted(&v))
        }
        4 => "userName pr".to_string(),
        5 => {
            let v = piece(&s.emails, r);
            match r.below(3) {
                0 => format!("emails[value {} {}]", op(r), quoted(&v)),
                1 => format!("emails.value {} {}", op(r), quoted(&v)),
                _ => format!(
                    "emails[type eq \"work\" and value {} {}]",
                    op(r),
                    quoted(&v)
                ),
            }
        }
        6 => {
            let v = piece(&s.externals, r);
            match r.below(4) {
                0 => "externalId pr".to_string(),
                _ => format!("externalId {} {}", op(r), quoted(&v)),
            }
        }
        7 => match r.below(3) {
            0 => "title pr".to_string(),
            _ => format!("title {} {}", op(r), quoted(piece(&TITLES, r))),
        },
        8 => match r.below(3) {
            0 => "active pr".to_string(),
            _ => format!("active eq {}", r.chance(2)),
        },
        9 => format!("displayName {} {}", op(r), quoted(piece(&STEMS, r))),
        10 => format!("name.familyName {} {}", op(r), quoted(piece(&FAMILIES, r))),
        11 => {
            let g = r.pick(&s.others).clone();
            match r.below(4) {
                0 => format!("groups.value eq {}", quoted(&g)),
                1 => format!("groups[value eq {}]", quoted(&g)),
                2 => "groups pr".to_string(),
                _ => format!(
                    "groups.display eq {}",
                    quoted(r.pick(&["Sales", "ops", "Émigrés"]))
                ),
            }
        }
        _ => id_or_time(s, r),
    }
}

/// Makes one comparison.
type Term = fn(&Seen, &mut Rng) -> String;

/// A filter of up to `depth` levels of `and`, `or` and `not` over `term`s.
fn filter_text(s: &Seen, r: &mut Rng, depth: usize, term: Term) -> String {
    if depth == 0 || r.chance(3) {
        return term(s, r);
    }
    let inner = |r: &mut Rng| filter_text(s, r, depth - 1, term);
    match r.below(5) {
        0 => format!("not ({})", inner(r)),
        1 | 2 => format!("({}) and ({})", inner(r), inner(r)),
        3 => format!("{} and {}", term(s, r), term(s, r)),
        _ => format!("({}) or ({})", inner(r), inner(r)),
    }
}

/// The seed: another one explores other filters (`AGREE_SEED=12345 cargo test --lib agree`).
fn seed() -> u64 {
    std::env::var("AGREE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5c1d_0001_u64)
        // xorshift never leaves 0.
        .max(1)
}

/// Every resource of `kind` in `ids` as a GET gives it, references and meta included: what
/// a filter means.
fn as_read(f: &Fixture, kind: Kind, ids: &[u128]) -> Vec<(u128, Value)> {
    ids.iter()
        .map(|id| {
            let res =
                f.rt.block_on(f.store.get("t".into(), kind, format_id(*id), true));
            (
                *id,
                Value::Object(res.unwrap().into_json("https://h/scim/v2")),
            )
        })
        .collect()
}

/// What `everyone` holds for the filters to compare with; `names` is the attribute `name`.
fn seen(everyone: &[(u128, Value)], name: &str, others: Vec<String>) -> Seen {
    let text = |v: &Value, key: &str| v[key].as_str().map(str::to_string);
    let all = |pick: &dyn Fn(&Value) -> Vec<String>| -> Vec<String> {
        everyone.iter().flat_map(|(_, v)| pick(v)).collect()
    };
    Seen {
        names: all(&|v| text(v, name).into_iter().collect()),
        emails: all(&|v| {
            let list = v["emails"].as_array().cloned().unwrap_or_default();
            list.iter().filter_map(|e| text(e, "value")).collect()
        }),
        externals: all(&|v| text(v, "externalId").into_iter().collect()),
        ids: everyone.iter().map(|(id, _)| format_id(*id)).collect(),
        times: all(&|v| {
            let meta = &v["meta"];
            [text(meta, "created"), text(meta, "lastModified")]
                .into_iter()
                .flatten()
                .collect()
        }),
        others,
    }
}

/// `rounds` random filters over `term`s, each answered by the store in one page, by the
/// stored-text path where it answers, in cursor pages of 7, and sorted by `sort_by`; each
/// answer compared with evaluating the filter on `everyone`.
fn agree(
    f: &Fixture,
    kind: Kind,
    everyone: &[(u128, Value)],
    s: &Seen,
    (term, sort_by): (Term, &str),
    r: &mut Rng,
    rounds: usize,
) {
    let list = |filter: &filter::Filter, count: u64, after: Option<u128>, sort: bool| {
        let q = ListQuery {
            filter: Some(filter.clone()),
            sort: sort.then(|| crate::scim::sort::SortSpec::parse(kind, sort_by, None).unwrap()),
            count,
            start_index: 1,
            after,
            with_refs: true,
            ..ListQuery::default()
        };
        f.rt.block_on(f.store.list("t".into(), kind.into(), q.clone()))
            .map(|page| {
                let ids: Vec<u128> = page
                    .items
                    .iter()
                    .map(|r| parse_id(&r.id).unwrap())
                    .collect();
                (page.total, ids, page.next, q)
            })
    };
    let (mut checked, mut matched) = (0, 0);
    for round in 0..rounds {
        let text = filter_text(s, r, 3, term);
        let Ok(parsed) = filter::parse_for(kind, &text) else {
            continue;
        };
        let mut want: Vec<u128> = everyone
            .iter()
            .filter(|(_, v)| filter::matches(&parsed, kind, v))
            .map(|(id, _)| *id)
            .collect();
        want.sort_unstable();
        let why = format!(
            "{} round {round} (seed {:#x}): {text}",
            kind.as_str(),
            seed()
        );
        let n = want.len() as u64;
        // One page holding everything.
        let (total, mut got, _, q) = list(&parsed, 1000, None, false).expect(&why);
        got.sort_unstable();
        assert_eq!((total, &got), (n, &want), "{why}");
        // The stored-text path, where it answers.
        if let Some(page) = f.store.list_stored("t", kind, &q) {
            let page = page.expect(&why);
            let mut stored: Vec<u128> = page
                .items
                .iter()
                .map(|s| parse_id(&s.id).unwrap())
                .collect();
            stored.sort_unstable();
            assert_eq!((page.total, &stored), (n, &want), "stored: {why}");
        }
        // Cursor pages of 7: every match once, in id order.
        let mut walked = Vec::new();
        let mut after = Some(0);
        while let Some(a) = after {
            let (total, page, next, _) = list(&parsed, 7, Some(a), false).expect(&why);
            assert_eq!(total, n, "cursor total: {why}");
            walked.extend(page);
            after = next;
            assert!(
                walked.len() <= want.len(),
                "cursor walks past the end: {why}"
            );
        }
        assert_eq!(walked, want, "cursor: {why}");
        // Sorted: the same set.
        if round % 4 == 0 {
            let (total, mut sorted, _, _) = list(&parsed, 1000, None, true).expect(&why);
            sorted.sort_unstable();
            assert_eq!((total, &sorted), (n, &want), "sorted: {why}");
        }
        checked += 1;
        matched += usize::from(!want.is_empty());
    }
    // The generator must make filters that parse and that match something, or this test
    // proves little.
    assert!(
        checked > rounds * 5 / 6,
        "only {checked} of {rounds} filters parsed"
    );
    assert!(
        matched > checked / 3,
        "only {matched} of {checked} filters matched anything"
    );
}

/// Users with renames and deletions behind them (each leaves index entries to clean up; a
/// stale one would show), and three groups; the users' filters, then the groups'.
#[test]
fn random_filters_find_what_evaluating_them_on_every_resource_finds() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let mut r = Rng(seed());
    let mut users: Vec<u128> = (0..240)
        .map(|i| {
            let body = user(i, &mut r);
            f.create(Kind::User, body, None)
        })
        .collect();
    for k in 0..20 {
        let id = users[k * 11];
        let name = format!("renamed{}{k}", r.pick(&STEMS));
        let rename = json!([{"op": "replace", "path": "userName", "value": name}]);
        f.patch_user(id, rename);
        f.patch_user(id, json!([{"op": "remove", "path": "emails"}]));
    }
    for k in 0..10 {
        f.delete_user(users.remove(k * 13 + 5));
    }
    let mut groups = Vec::new();
    for i in 0..40 {
        let from = r.below(users.len());
        let to = (from + r.below(60)).min(users.len());
        let members: Vec<Value> = users[from..to]
            .iter()
            .map(|m| json!({"value": format_id(*m)}))
            .collect();
        let mut body =
            json!({"displayName": format!("{} {i}", r.pick(&STEMS)), "members": members});
        if r.chance(2) {
            body["externalId"] = json!(format!("{}{i}", if r.chance(2) { "G" } else { "g" }));
        }
        groups.push(f.create(Kind::Group, body, None));
    }
    // Renamed, emptied and deleted groups leave entries behind as well.
    for k in 0..5 {
        f.replace_group(
            groups[k * 3],
            json!({"displayName": format!("Renamed {k}")}),
        );
    }
    for k in 0..3 {
        let id = groups.remove(k * 5 + 1);
        f.rt.block_on(f.store.delete(
            f.actor.clone(),
            Kind::Group.into(),
            format_id(id),
            Conditions::default(),
        ))
        .unwrap();
    }
    let everyone = as_read(&f, Kind::User, &users);
    let every_group = as_read(&f, Kind::Group, &groups);
    let group_ids = groups.iter().map(|g| format_id(*g)).collect();
    let user_ids = users.iter().map(|u| format_id(*u)).collect();
    let s = seen(&everyone, "userName", group_ids);
    agree(
        &f,
        Kind::User,
        &everyone,
        &s,
        (user_term, "userName"),
        &mut r,
        500,
    );
    let s = seen(&every_group, "displayName", user_ids);
    agree(
        &f,
        Kind::Group,
        &every_group,
        &s,
        (group_term, "displayName"),
        &mut r,
        300,
    );
}
