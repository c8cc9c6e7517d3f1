//! The on-disk layout: the tables made on first open, and the migrations from older layouts.

use redb::{ReadableTable, Table};

use std::collections::BTreeMap;

use super::plan;
use super::ranks;
use super::record::{decode, stored_stamp};
use super::refold;
use super::tables::*;
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

/// The META key of the version floor: a restore sets it past every version the replaced
/// database can have given out, and each write after takes its resource's version above it
/// (`W::next_version`), so that no ETag a client holds from before the restore names another
/// state of the resource after it.
pub(super) const VERSION_FLOOR: &str = "version_floor";

/// The file's version floor (0: never restored).
pub(super) fn version_floor(db: &impl redb::ReadableDatabase) -> Result<u64, redb::Error> {
    let txn = db.begin_read()?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get(VERSION_FLOOR)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The latest time a user was changed at, in Unix nanoseconds as the index keeps them (0:
/// none), from each tenant's end of the lastModified index: a few reads, at start.
pub(super) fn newest_change(db: &impl redb::ReadableDatabase) -> Result<i64, redb::Error> {
    let txn = db.begin_read()?;
    let (seqs, modified) = match (txn.open_table(EVENT_SEQ), txn.open_table(MODIFIED_ID)) {
        (Ok(s), Ok(m)) => (s, m),
        _ => return Ok(0),
    };
    let user = Kind::User.code();
    let mut newest = 0;
    for e in seqs.iter()? {
        let (t, _) = e?;
        let t = t.value();
        if let Some(last) = modified
            .range((t, user, i64::MIN, 0u128)..=(t, user, i64::MAX, u128::MAX))?
            .next_back()
        {
            newest = newest.max(last?.0.value().2);
        }
    }
    Ok(newest)
}

/// The layout version the file records, without changing it (`None`: a new file).
pub(super) fn stored_version(db: &redb::Database) -> Result<Option<u64>, redb::Error> {
    let txn = redb::ReadableDatabase::begin_read(db)?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get("schema_version")?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Create tables on first open and record the layout version; returns the version found.
pub(super) fn init_schema(db: &redb::Database) -> Result<u64, redb::Error> {
    let started = std::time::Instant::now();
    let mut txn = db.begin_write()?;
    // Two-phase, as every commit of the writer: after a one-phase commit redb's checksum
    // check falls back to the slot before it without a word when the newest does not verify.
    txn.set_two_phase_commit(true);
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
        txn.open_table(MEMBER_DISPLAY)?;
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
            // Layout 4 keys are lowercased names, from which the fold follows; layout 5
            // keys were folded with mappings that lose letters, so its records are read.
            if v < 5 {
                let (moved, clashed) = refold::from_lowercase_keys(&txn)?;
                tracing::info!(
                    moved,
                    clashed,
                    "layout 6: re-keyed names outside ASCII to their folded form"
                );
            } else if v < 6 {
                let (moved, clashed) = refold::from_records(&txn)?;
                tracing::info!(
                    moved,
                    clashed,
                    "layout 6: re-keyed names that layout 5 folded with a longer case mapping (ß, ı, ligatures)"
                );
            }
            if v < 7 {
                let (keyed, beside) = refold::index_left_out(&txn)?;
                tracing::info!(
                    keyed,
                    beside,
                    "layout 7: indexed the users earlier upgrades left out of the userName index"
                );
            }
            meta.insert("schema_version", SCHEMA_VERSION)?;
        }
        found.unwrap_or(SCHEMA_VERSION)
    };
    txn.commit()?;
    if found < SCHEMA_VERSION {
        // The end of a conversion, and what it means for a way back.
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            secs = format_args!("{:.1}", started.elapsed().as_secs_f64()),
            "converted the database layout; an older scimd can no longer open this file (to go back, restore the backup taken before the upgrade with the older version)"
        );
    }
    Ok(found)
}
