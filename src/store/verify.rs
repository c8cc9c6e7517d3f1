//! `scimd verify`: every index against the resources, membership in both directions, the
//! counters, the position counts, and the event sequence. Reads one snapshot; reports each
//! mismatch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable};

use super::ops::{decode, keys};
use super::plan;
use super::ranks;
use super::tables::*;
use super::{Store, format_id};
use crate::scim::schema::{Kind, Rt};

fn kind_of(code: u8) -> Option<Kind> {
    [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.code() == code)
}

impl Store {
    /// Mismatches found (empty when consistent). `types` gives each tenant's resource types
    /// (for its unique extension attributes); unknown tenants use the built-in ones.
    pub async fn verify(&self, types: HashMap<String, (Rt, Rt)>) -> Result<Vec<String>, String> {
        let db = self.db().map_err(|e| e.detail)?;
        tokio::task::spawn_blocking(move || check(&db, &types).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }
}

fn check(
    db: &redb::Database,
    types: &HashMap<String, (Rt, Rt)>,
) -> Result<Vec<String>, redb::Error> {
    let r = db.begin_read()?;
    let res = r.open_table(RESOURCES)?;
    let counts = r.open_table(COUNTS)?;
    let usernames = r.open_table(USERNAME_USERID)?;
    let ext_ids = r.open_multimap_table(EXTERNALID_ID)?;
    let emails = r.open_multimap_table(EMAIL_USERID)?;
    let names = r.open_multimap_table(DISPLAYNAME_ID)?;
    let members = r.open_table(GROUPID_MEMBERID)?;
    let member_of = r.open_table(MEMBERID_GROUPID)?;
    let events = r.open_table(EVENTS)?;
    let seqs = r.open_table(EVENT_SEQ)?;
    let overflow = r.open_table(OVERFLOW_USERID)?;
    let unique = r.open_table(UNIQUE_ID)?;
    let mut bad = Vec::new();
    // What the resources say the indexes must hold.
    let mut want_user: BTreeSet<(String, String, u128)> = BTreeSet::new();
    let mut want_ext: BTreeSet<(String, u8, String, u128)> = BTreeSet::new();
    let mut want_email: BTreeSet<(String, String, u128)> = BTreeSet::new();
    let mut want_name: BTreeSet<(String, u8, String, u128)> = BTreeSet::new();
    let mut want_unique: BTreeSet<(String, u8, String, String, u128)> = BTreeSet::new();
    let mut n: BTreeMap<(String, u8), u64> = BTreeMap::new();
    let mut active: BTreeMap<String, u64> = BTreeMap::new();
    let mut exists: BTreeSet<(String, u8, u128)> = BTreeSet::new();
    for e in res.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        let t = t.to_string();
        let Some(kind) = kind_of(code) else {
            bad.push(format!(
                "{t}: resource {} has unknown kind code {code}",
                format_id(id)
            ));
            continue;
        };
        let Some(rec) = decode(v.value()) else {
            bad.push(format!("{t}: resource {} does not decode", format_id(id)));
            continue;
        };
        exists.insert((t.clone(), code, id));
        *n.entry((t.clone(), code)).or_default() += 1;
        if kind == Kind::User && plan::is_active(&rec.body) {
            *active.entry(t.clone()).or_default() += 1;
        }
        let rt = types
            .get(&t)
            .map(|(u, g)| if kind == Kind::User { *u } else { *g })
            .unwrap_or(kind.into());
        let ks = keys(rt, &rec.body);
        if let Some(u) = ks.username {
            want_user.insert((t.clone(), u, id));
        }
        if let Some(x) = ks.external_id {
            want_ext.insert((t.clone(), code, x, id));
        }
        for m in ks.emails {
            want_email.insert((t.clone(), m, id));
        }
        if let Some(d) = ks.display {
            want_name.insert((t.clone(), code, d, id));
        }
        for (a, val) in ks.unique {
            want_unique.insert((t.clone(), code, a, val, id));
        }
    }
    let mut have_user = BTreeSet::new();
    for e in usernames.iter()? {
        let (k, v) = e?;
        let (t, u) = k.value();
        have_user.insert((t.to_string(), u.to_string(), v.value()));
    }
    diff("userName index", &want_user, &have_user, &mut bad);
    let mut have = BTreeSet::new();
    for e in ext_ids.iter()? {
        let (k, vals) = e?;
        let (t, c, x) = k.value();
        for v in vals {
            have.insert((t.to_string(), c, x.to_string(), v?.value()));
        }
    }
    diff("externalId index", &want_ext, &have, &mut bad);
    let mut have = BTreeSet::new();
    for e in emails.iter()? {
        let (k, vals) = e?;
        let (t, m) = k.value();
        for v in vals {
            have.insert((t.to_string(), m.to_string(), v?.value()));
        }
    }
    diff("email index", &want_email, &have, &mut bad);
    let mut have = BTreeSet::new();
    for e in names.iter()? {
        let (k, vals) = e?;
        let (t, c, d) = k.value();
        for v in vals {
            have.insert((t.to_string(), c, d.to_string(), v?.value()));
        }
    }
    diff("displayName index", &want_name, &have, &mut bad);
    let mut have = BTreeSet::new();
    for e in unique.iter()? {
        let (k, v) = e?;
        let (t, c, a, val) = k.value();
        have.insert((t.to_string(), c, a.to_string(), val.to_string(), v.value()));
    }
    diff("unique-attribute index", &want_unique, &have, &mut bad);
    // Position counts: recounted from the resources, which `exists` holds in key order.
    let want: BTreeSet<_> = ranks::expected(exists.iter().map(|(t, c, id)| (t.as_str(), *c, *id)))
        .into_iter()
        .collect();
    let mut have = BTreeSet::new();
    for e in r.open_table(RANKS)?.iter()? {
        let (k, v) = e?;
        let (t, c, l, p) = k.value();
        have.insert(((t.to_string(), c, l, p), v.value()));
    }
    diff("position counts", &want, &have, &mut bad);
    // Membership: mirrors of each other, between existing resources.
    let mut down = BTreeSet::new();
    for e in members.iter()? {
        let (k, v) = e?;
        let (t, g, m) = k.value();
        if !exists.contains(&(t.to_string(), Kind::Group.code(), g)) {
            bad.push(format!("{t}: membership of missing group {}", format_id(g)));
        }
        if !exists.contains(&(t.to_string(), v.value(), m)) {
            bad.push(format!(
                "{t}: group {} lists missing member {}",
                format_id(g),
                format_id(m)
            ));
        }
        down.insert((t.to_string(), g, m));
    }
    let mut up = BTreeSet::new();
    for e in member_of.iter()? {
        let (k, _) = e?;
        let (t, m, g) = k.value();
        up.insert((t.to_string(), g, m));
    }
    diff(
        "membership (group → member vs member → group)",
        &down,
        &up,
        &mut bad,
    );
    // Counters.
    for e in counts.iter()? {
        let (k, v) = e?;
        let (t, code) = k.value();
        let want = match code {
            c if kind_of(c).is_some() => n.get(&(t.to_string(), c)).copied().unwrap_or(0),
            plan::ACTIVE => active.get(t).copied().unwrap_or(0),
            plan::OVERFLOW => {
                let mut c = 0;
                for o in overflow.range((t, 0u128)..=(t, u128::MAX))? {
                    o?;
                    c += 1;
                }
                c
            }
            _ => continue,
        };
        if v.value() != want {
            bad.push(format!(
                "{t}: counter {code} is {} but there are {want}",
                v.value()
            ));
        }
    }
    for ((t, code), c) in &n {
        if counts.get((t.as_str(), *code))?.is_none() {
            bad.push(format!("{t}: no counter for kind {code} ({c} resources)"));
        }
    }
    // Events: the sequence counter is at least every stored event's number.
    for e in events.iter()? {
        let (k, _) = e?;
        let (t, seq) = k.value();
        let last = seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
        if seq > last {
            bad.push(format!(
                "{t}: event {seq} is past the sequence counter {last}"
            ));
        }
    }
    Ok(bad)
}

fn diff<T: Ord + std::fmt::Debug>(
    what: &str,
    want: &BTreeSet<T>,
    have: &BTreeSet<T>,
    bad: &mut Vec<String>,
) {
    for x in want.difference(have) {
        bad.push(format!("{what}: missing {x:?}"));
    }
    for x in have.difference(want) {
        bad.push(format!("{what}: stale {x:?}"));
    }
}
