//! Re-keying the name indexes (userName, emails, displayName) when the fold that makes
//! their keys changes (`scim::fold`): layout 4 lowercased names; layout 5 folded them with
//! the case mappings that change a name's length (`ß` → `ss`) and joined `ı` with `i`;
//! layout 6 folds them without.

use std::collections::BTreeSet;

use redb::{MultimapTable, ReadableMultimapTable, ReadableTable, Table};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::record::{Keys, decode, keys, keys_folded};
use super::tables::{DISPLAYNAME_ID, EMAIL_USERID, RESOURCES, USERNAME_USERID};
use super::{alike, format_id};
use crate::scim::fold::fold;
use crate::scim::schema::Kind;

/// Give `id` the unique userName key `key` unless another user holds it. Two users whose
/// names now fold alike cannot both have it: the holder keeps it, and the other is indexed
/// beside it (`alike`), readable and writable under its name; each such pair is logged, and
/// `verify` names it, until one is renamed. False when it is the other.
fn claim(
    names: &mut Table<(&str, &str), u128>,
    t: &str,
    key: &str,
    id: u128,
) -> Result<bool, redb::Error> {
    // The user a lookup of the name finds, which may be one beside a holder that has gone:
    // a user joining them must not become the answer in its place.
    let holder = alike::holder(names, t, key)?;
    match holder {
        Some(other) if other != id => {
            tracing::warn!(
                tenant = %t,
                holder = %format_id(other),
                user = %format_id(id),
                "two userNames are now one name (they differ only in case or Unicode \
                 form); a lookup finds the holder only: rename one of the two users"
            );
            // With the holder gone, a lookup finds the oldest user beside it. One joining
            // them that is older still would take that place, so the user found is given
            // the name's own key: a conversion runs before anyone walks the index.
            if id < other && names.get((t, key))?.is_none() {
                names.remove((t, alike::key(key, other).as_str()))?;
                names.insert((t, key), other)?;
            }
            alike::share(names, t, key, id)?;
            Ok(false)
        }
        Some(_) => Ok(true),
        None => {
            names.insert((t, key), id)?;
            Ok(true)
        }
    }
}

/// Group displayNames are unique too, but their index holds a set of ids: two groups whose
/// names now fold alike both answer a lookup by that name. Each such pair is logged, and
/// `verify` names it, until one is renamed.
fn warn_if_shared(
    display: &MultimapTable<(&str, u8, &str), u128>,
    t: &str,
    code: u8,
    name: &str,
    id: u128,
) -> Result<(), redb::Error> {
    if code != Kind::Group.code() {
        return Ok(());
    }
    for other in display.get((t, code, name))? {
        let other = other?.value();
        if other != id {
            tracing::warn!(
                tenant = %t,
                group = %format_id(other),
                other = %format_id(id),
                "two group displayNames are now one name (they differ only in case or \
                 Unicode form); a lookup finds both: rename one of the two groups"
            );
        }
    }
    Ok(())
}

/// Layout 4 → 6: every key was its name lowercased, which folds as the name does, so only
/// keys outside ASCII can differ and those are re-keyed. Of two users that now fold alike,
/// the one holding the key already (else the older) keeps it, and the other's old key
/// goes, as no lookup folds to it any more. Returns (re-keyed, keyed beside a holder).
pub(super) fn from_lowercase_keys(txn: &redb::WriteTransaction) -> Result<(u64, u64), redb::Error> {
    let (mut moved, mut clashed) = (0, 0);
    let mut names = txn.open_table(USERNAME_USERID)?;
    let mut stale: Vec<(String, String, u128)> = Vec::new();
    for e in names.iter()? {
        let (k, v) = e?;
        let (t, name) = k.value();
        if !name.is_ascii() && fold(name) != name {
            stale.push((t.to_string(), name.to_string(), v.value()));
        }
    }
    // Oldest first (ids are UUIDv7): the account made first keeps the name.
    stale.sort_by_key(|s| s.2);
    for (t, old, id) in &stale {
        let new = fold(old);
        if claim(&mut names, t, &new, *id)? {
            moved += 1;
        } else {
            clashed += 1;
        }
        names.remove((t.as_str(), old.as_str()))?;
    }
    drop(names);
    let mut emails = txn.open_multimap_table(EMAIL_USERID)?;
    let mut stale = Vec::new();
    for e in emails.iter()? {
        let (k, ids) = e?;
        let (t, name) = k.value();
        if !name.is_ascii() && fold(name) != name {
            for id in ids {
                stale.push((t.to_string(), name.to_string(), id?.value()));
            }
        }
    }
    for (t, old, id) in &stale {
        emails.remove((t.as_str(), old.as_str()), id)?;
        emails.insert((t.as_str(), fold(old).as_str()), id)?;
    }
    moved += stale.len() as u64;
    let mut display = txn.open_multimap_table(DISPLAYNAME_ID)?;
    let mut stale = Vec::new();
    for e in display.iter()? {
        let (k, ids) = e?;
        let (t, code, name) = k.value();
        if !name.is_ascii() && fold(name) != name {
            for id in ids {
                stale.push((t.to_string(), code, name.to_string(), id?.value()));
            }
        }
    }
    for (t, code, old, id) in &stale {
        display.remove((t.as_str(), *code, old.as_str()), id)?;
        display.insert((t.as_str(), *code, fold(old).as_str()), id)?;
        warn_if_shared(&display, t, *code, &fold(old), *id)?;
    }
    moved += stale.len() as u64;
    Ok((moved, clashed))
}

/// How layout 5 folded a name: lowercase, uppercase and lowercase again, then NFC.
fn fold_v5(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.to_lowercase()
        .to_uppercase()
        .to_lowercase()
        .nfc()
        .collect()
}

/// The name keys of `Keys`; the others do not depend on the fold.
fn names(k: Keys) -> (Option<String>, BTreeSet<String>, Option<String>) {
    (k.username, k.emails, k.display)
}

/// Layout 5 → 6: a layout-5 key cannot tell `straße` from `strasse` or `ılker` from
/// `ilker`, so the records are read, those with a name outside ASCII (all others fold as
/// before) in full. The old keys all go first, then the new ones are claimed, so no key is
/// refused for being one that is about to be freed. A user that layout 5 left out of the
/// userName index, its name folding to another's, gets a freed key back in a second pass.
/// Returns (re-keyed, keyed beside a holder).
pub(super) fn from_records(txn: &redb::WriteTransaction) -> Result<(u64, u64), redb::Error> {
    type Names = (Option<String>, BTreeSet<String>, Option<String>);
    let mut changed: Vec<(String, u8, u128, Names, Names)> = Vec::new();
    for e in txn.open_table(RESOURCES)?.iter()? {
        let (k, v) = e?;
        if v.value().is_ascii() {
            continue;
        }
        let (t, code, id) = k.value();
        let Some(rec) = decode(v.value()) else {
            continue;
        };
        let kind = Kind::of_member_code(code);
        let old = names(keys_folded(kind, &rec.body, fold_v5));
        let new = names(keys(kind, &rec.body));
        if old != new {
            changed.push((t.to_string(), code, id, old, new));
        }
    }
    let mut usernames = txn.open_table(USERNAME_USERID)?;
    let mut emails = txn.open_multimap_table(EMAIL_USERID)?;
    let mut display = txn.open_multimap_table(DISPLAYNAME_ID)?;
    let mut freed: BTreeSet<(String, String)> = BTreeSet::new();
    for (t, code, id, (old_user, old_emails, old_display), (new_user, new_emails, new_display)) in
        &changed
    {
        let t = t.as_str();
        if let Some(u) = old_user.as_deref().filter(|_| old_user != new_user)
            && usernames.get((t, u))?.map(|g| g.value()) == Some(*id)
        {
            usernames.remove((t, u))?;
            freed.insert((t.to_string(), u.to_string()));
        }
        for e in old_emails.difference(new_emails) {
            emails.remove((t, e.as_str()), id)?;
        }
        if let Some(d) = old_display
            .as_deref()
            .filter(|_| old_display != new_display)
        {
            display.remove((t, *code, d), id)?;
        }
    }
    let (mut moved, mut clashed) = (0, 0);
    for (t, code, id, (old_user, old_emails, old_display), (new_user, new_emails, new_display)) in
        &changed
    {
        let t = t.as_str();
        if let Some(u) = new_user.as_deref().filter(|_| old_user != new_user)
            && !claim(&mut usernames, t, u, *id)?
        {
            clashed += 1;
        }
        for e in new_emails.difference(old_emails) {
            emails.insert((t, e.as_str()), id)?;
        }
        if let Some(d) = new_display
            .as_deref()
            .filter(|_| old_display != new_display)
        {
            display.insert((t, *code, d), id)?;
            warn_if_shared(&display, t, *code, d, *id)?;
        }
        moved += 1;
    }
    if freed.is_empty() {
        return Ok((moved, clashed));
    }
    for e in txn.open_table(RESOURCES)?.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        if code != Kind::User.code() || !v.value().is_ascii() {
            continue;
        }
        let Some(rec) = decode(v.value()) else {
            continue;
        };
        let Some(key) = rec.body.get("userName").and_then(Value::as_str).map(fold) else {
            continue;
        };
        if freed.contains(&(t.to_string(), key.clone())) {
            if claim(&mut usernames, t, &key, id)? {
                moved += 1;
            } else {
                clashed += 1;
            }
        }
    }
    Ok((moved, clashed))
}

/// Layout 7: every user the userName index names neither as a key's holder nor beside one
/// (`alike`) gets its entry. Earlier upgrades left some out: layout 5 left out one of two
/// users whose names it folded alike, and its step to layout 6 re-keyed only the names
/// whose key changed, so such a user stayed out when its name still clashed, or when it was
/// outside ASCII and its key was freed; and builds before `alike` left the other of a new
/// pair out. A user left out is missing from walks in name order; when its key was freed,
/// a lookup of its name misses it too, and a new user may take the name. Returns (given the
/// key, beside a holder).
pub(super) fn index_left_out(txn: &redb::WriteTransaction) -> Result<(u64, u64), redb::Error> {
    let mut usernames = txn.open_table(USERNAME_USERID)?;
    let (mut keyed, mut beside) = (0, 0);
    for e in txn.open_table(RESOURCES)?.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        if code != Kind::User.code() {
            continue;
        }
        let Some(mut rec) = super::skim::skim(v.value(), &["userName"]) else {
            continue;
        };
        let Some(Value::String(name)) = rec.body.remove("userName") else {
            continue;
        };
        let key = fold(&name);
        if alike::indexed(&usernames, t, &key, id)? {
            continue;
        }
        if claim(&mut usernames, t, &key, id)? {
            keyed += 1;
        } else {
            beside += 1;
        }
    }
    Ok((keyed, beside))
}
