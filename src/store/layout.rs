//! The on-disk layout: the tables made on first open, and the migrations from older layouts.

use redb::{ReadableMultimapTable, ReadableTable, Table};

use std::collections::BTreeMap;

use super::plan;
use super::ranks;
use super::record::{decode, stored_stamp};
use super::tables::*;
use crate::scim::fold::fold;
use crate::scim::schema::Kind;

/// Fill the lastModified index from the resource table (the layout 2 → 3 migration).
fn index_modified(
    res: &impl ReadableTable<(&'static str, u8, u128), &'static [u8]>,
    modified: &mut Table<'_, (&'static str, u8, i64, u128), ()>,
) -> Result<u64, redb::Error> {
    let mut n = 0;
    for e in res.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        if code != Kind::User.code() {
            continue;
        }
        if let Some(stamp) = stored_stamp(v.value()) {
            modified.insert((t, code, stamp, id), ())?;
            n += 1;
        }
    }
    Ok(n)
}

/// The layout 3 → 4 migration: files from before the plan counters were kept, and from a
/// build that also indexed groups' lastModified, passed as layout 3. Recount each tenant's
/// active users and seat overflow, and drop group entries from the lastModified index.
/// Returns (tenants recounted, index entries dropped).
fn recount_and_unindex_groups(txn: &redb::WriteTransaction) -> Result<(u64, u64), redb::Error> {
    let mut active: BTreeMap<String, u64> = BTreeMap::new();
    let mut overflow: BTreeMap<String, u64> = BTreeMap::new();
    let mut counts = txn.open_table(COUNTS)?;
    // Every tenant that has a counter gets its true value, 0 included.
    for e in counts.iter()? {
        let (k, _) = e?;
        let (t, code) = k.value();
        if code == Kind::User.code() || code == plan::ACTIVE {
            active.entry(t.to_string()).or_default();
        }
        if code == plan::OVERFLOW {
            overflow.entry(t.to_string()).or_default();
        }
    }
    for e in txn.open_table(RESOURCES)?.iter()? {
        let (k, v) = e?;
        let (t, code, _) = k.value();
        if code == Kind::User.code() && decode(v.value()).is_some_and(|r| plan::is_active(&r.body))
        {
            *active.entry(t.to_string()).or_default() += 1;
        }
    }
    for e in txn.open_table(OVERFLOW_USERID)?.iter()? {
        let (k, _) = e?;
        *overflow.entry(k.value().0.to_string()).or_default() += 1;
    }
    for (t, n) in &active {
        counts.insert((t.as_str(), plan::ACTIVE), n)?;
    }
    for (t, n) in &overflow {
        counts.insert((t.as_str(), plan::OVERFLOW), n)?;
    }
    let mut modified = txn.open_table(MODIFIED_ID)?;
    let mut stale = Vec::new();
    for e in modified.iter()? {
        let (k, _) = e?;
        let (t, code, stamp, id) = k.value();
        if code != Kind::User.code() {
            stale.push((t.to_string(), code, stamp, id));
        }
    }
    for (t, code, stamp, id) in &stale {
        modified.remove((t.as_str(), *code, *stamp, *id))?;
    }
    Ok((active.len() as u64, stale.len() as u64))
}

/// The layout 4 → 5 migration: userName, email and displayName keys were lowercased, and
/// are now folded (`scim::fold`). Only keys outside ASCII can differ, so those are the ones
/// re-keyed. Two users whose names now fold alike (`straße` and `STRASSE`) cannot share the
/// unique userName key: the one that holds it already (else the older) keeps it, and the
/// other's old key goes, as no lookup folds to it any more. That user stays readable, and
/// writable under its name; each such pair is logged, and `verify` names it, until one is
/// renamed. Returns (re-keyed, left out).
fn refold_names(txn: &redb::WriteTransaction) -> Result<(u64, u64), redb::Error> {
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
        let holder = names.get((t.as_str(), new.as_str()))?.map(|g| g.value());
        match holder {
            Some(other) if other != *id => {
                tracing::warn!(
                    tenant = %t,
                    holder = %super::format_id(other),
                    user = %super::format_id(*id),
                    "two userNames are now one name (they differ only in case or Unicode \
                     form); a lookup finds the holder only: rename one of the two users"
                );
                clashed += 1;
            }
            _ => {
                names.insert((t.as_str(), new.as_str()), id)?;
                moved += 1;
            }
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
    }
    moved += stale.len() as u64;
    Ok((moved, clashed))
}

/// Create tables on first open and record the layout version; returns the version found.
pub(super) fn init_schema(db: &redb::Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let found = {
        let mut meta = txn.open_table(META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        if found.is_none() {
            meta.insert("schema_version", SCHEMA_VERSION)?;
        }
        txn.open_table(RESOURCES)?;
        txn.open_table(COUNTS)?;
        txn.open_table(USERNAME_USERID)?;
        txn.open_multimap_table(EXTERNALID_ID)?;
        txn.open_multimap_table(EMAIL_USERID)?;
        txn.open_multimap_table(DISPLAYNAME_ID)?;
        txn.open_table(GROUPID_MEMBERID)?;
        txn.open_table(MEMBERID_GROUPID)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_SEQ)?;
        txn.open_table(OVERFLOW_USERID)?;
        txn.open_table(UNIQUE_ID)?;
        let mut ranks_table = txn.open_table(RANKS)?;
        let mut modified = txn.open_table(MODIFIED_ID)?;
        if let Some(v) = found
            && v < SCHEMA_VERSION
        {
            // Migrations run here, in this one transaction, one version step at a time:
            // a crash part-way leaves the old layout intact.
            tracing::info!(
                from = v,
                to = SCHEMA_VERSION,
                "migrating the database layout"
            );
            if v < 2 {
                let n = ranks::rebuild(&txn.open_table(RESOURCES)?, &mut ranks_table)?;
                tracing::info!(
                    counts = n,
                    "layout 2: counted resources for startIndex paging"
                );
            }
            if v < 3 {
                let n = index_modified(&txn.open_table(RESOURCES)?, &mut modified)?;
                tracing::info!(entries = n, "layout 3: indexed meta.lastModified");
            }
            if v < 4 {
                // The migration opens the table itself (redb opens a table once at a time).
                drop(modified);
                let (tenants, dropped) = recount_and_unindex_groups(&txn)?;
                tracing::info!(
                    tenants,
                    dropped,
                    "layout 4: recounted active users and seat overflow; dropped group entries from the lastModified index"
                );
            }
            if v < 5 {
                let (moved, clashed) = refold_names(&txn)?;
                tracing::info!(
                    moved,
                    clashed,
                    "layout 5: re-keyed names outside ASCII to their folded form"
                );
            }
            meta.insert("schema_version", SCHEMA_VERSION)?;
        }
        found.unwrap_or(SCHEMA_VERSION)
    };
    txn.commit()?;
    Ok(found)
}
