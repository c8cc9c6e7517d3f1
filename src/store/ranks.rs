//! Positions for `startIndex` paging. An unfiltered list is in id order, and ids are UUIDv7
//! (time-ordered), so "the resource at position p" has no key of its own: without help,
//! finding it means stepping over every resource before it, which at a million users is a
//! read of the whole resource table per page. Counting the resources under each id prefix of
//! 12, 24, 36 and 48 bits (for UUIDv7: about 2 years, 4.7 hours, 4 seconds and 1 ms of
//! creation time) finds the page by summing at most four short runs of counts (each from
//! whichever end is nearer), then stepping over the few resources created in the same
//! millisecond.
//!
//! The counts are kept by the same write transaction that creates or deletes the resource, so
//! they can never disagree with it; `verify` recounts them.

use redb::{ReadableTable, StorageError, Table};

/// Key of one count: (tenant, kind code, level, id prefix).
pub type RankKey = (&'static str, u8, u8, u64);

const BITS: u32 = 12;
const LEVELS: u8 = 4;
const FANOUT: u64 = 1 << BITS;

fn prefix(id: u128, level: u8) -> u64 {
    // At most 48 bits: fits.
    (id >> (128 - BITS * (u32::from(level) + 1))) as u64
}

/// Count `id` in (`up`) or out of its tenant and kind's prefixes. A prefix whose count
/// reaches zero is removed, so the table holds no more entries than there are prefixes in use.
pub fn bump(
    t: &mut Table<'_, RankKey, u64>,
    tenant: &str,
    kind: u8,
    id: u128,
    up: bool,
) -> Result<(), StorageError> {
    for level in 0..LEVELS {
        let key = (tenant, kind, level, prefix(id, level));
        let n = t.get(key)?.map(|g| g.value()).unwrap_or(0);
        match (up, n) {
            (true, _) => {
                t.insert(key, n + 1)?;
            }
            (false, 0 | 1) => {
                t.remove(key)?;
            }
            (false, _) => {
                t.insert(key, n - 1)?;
            }
        }
    }
    Ok(())
}

/// The ids a count at `level` for `prefix` covers (first and last).
pub fn id_range(level: u8, prefix: u64) -> (u128, u128) {
    let shift = 128 - BITS * (u32::from(level) + 1);
    let lo = u128::from(prefix) << shift;
    (lo, lo | ((1u128 << shift) - 1))
}

/// Where the resource at 0-based position `skip` (in id order) is found: the first id of the
/// 48-bit prefix that holds it, and how many resources of that prefix come before it. `None`
/// when there are no more than `skip` resources.
pub fn locate(
    t: &impl ReadableTable<RankKey, u64>,
    tenant: &str,
    kind: u8,
    skip: u64,
) -> Result<Option<(u128, u64)>, StorageError> {
    let mut rest = skip;
    let mut parent = 0u64;
    // How many the prefix chosen above holds (at level 0, unknown: its few prefixes are
    // summed from the first).
    let mut within: Option<u64> = None;
    for level in 0..LEVELS {
        // The level's prefixes that extend the one chosen above (all of them at level 0).
        let lo = parent << BITS;
        let hi = lo | (FANOUT - 1);
        let mut range = t.range((tenant, kind, level, lo)..=(tenant, kind, level, hi))?;
        let mut chosen = None;
        match within {
            // Past the middle, counted from the end: the last pages, the ones an import
            // reads last and a client checks first, cost what the first ones do.
            Some(all) if rest.saturating_mul(2) > all => {
                // 1-based from the end: the resource at `rest` is the `back`-th last.
                let mut back = all - rest;
                while let Some(e) = range.next_back() {
                    let (k, v) = e?;
                    let n = v.value();
                    if back <= n {
                        chosen = Some((k.value().3, n));
                        rest = n - back;
                        break;
                    }
                    back -= n;
                }
            }
            _ => {
                for e in range {
                    let (k, v) = e?;
                    let n = v.value();
                    if rest < n {
                        chosen = Some((k.value().3, n));
                        break;
                    }
                    rest -= n;
                }
            }
        }
        match chosen {
            Some((p, n)) => (parent, within) = (p, Some(n)),
            None => return Ok(None),
        }
    }
    Ok(Some((
        u128::from(parent) << (128 - BITS * u32::from(LEVELS)),
        rest,
    )))
}

/// The counts a sequence of (tenant, kind, id) in key order calls for. Resources sharing a
/// prefix are adjacent in key order, so each count is a run: `emit` gets each one once,
/// without holding them all in memory.
pub struct Runs<F: FnMut((&str, u8, u8, u64), u64)> {
    open: Vec<Option<(String, u8, u64, u64)>>,
    emit: F,
}

impl<F: FnMut((&str, u8, u8, u64), u64)> Runs<F> {
    pub fn new(emit: F) -> Runs<F> {
        Runs {
            open: vec![None; usize::from(LEVELS)],
            emit,
        }
    }

    pub fn push(&mut self, tenant: &str, kind: u8, id: u128) {
        for level in 0..LEVELS {
            let p = prefix(id, level);
            let slot = &mut self.open[usize::from(level)];
            match slot {
                Some((t, k, q, n)) if t == tenant && *k == kind && *q == p => *n += 1,
                _ => {
                    if let Some((t, k, q, n)) = slot.take() {
                        (self.emit)((&t, k, level, q), n);
                    }
                    *slot = Some((tenant.to_string(), kind, p, 1));
                }
            }
        }
    }

    pub fn finish(mut self) {
        for level in 0..LEVELS {
            if let Some((t, k, q, n)) = self.open[usize::from(level)].take() {
                (self.emit)((&t, k, level, q), n);
            }
        }
    }
}

/// Fill the counts from the resource table (the layout 1 → 2 migration).
pub fn rebuild(
    res: &impl ReadableTable<(&'static str, u8, u128), &'static [u8]>,
    ranks: &mut Table<'_, RankKey, u64>,
) -> Result<u64, StorageError> {
    let mut failed = None;
    let mut written = 0u64;
    {
        let mut runs = Runs::new(|k: (&str, u8, u8, u64), n| {
            if failed.is_none() {
                match ranks.insert(k, n) {
                    Ok(_) => written += 1,
                    Err(e) => failed = Some(e),
                }
            }
        });
        for e in res.iter()? {
            let (k, _) = e?;
            let (t, kind, id) = k.value();
            runs.push(t, kind, id);
        }
        runs.finish();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    use std::collections::BTreeMap;

    const T: redb::TableDefinition<RankKey, u64> = TableDefinition::new("ranks");

    /// The counts as a map.
    fn expected<'a>(
        keys: impl Iterator<Item = (&'a str, u8, u128)>,
    ) -> BTreeMap<(String, u8, u8, u64), u64> {
        let mut want = BTreeMap::new();
        let mut runs = Runs::new(|(t, k, l, p): (&str, u8, u8, u64), n| {
            want.insert((t.to_string(), k, l, p), n);
        });
        for (t, k, id) in keys {
            runs.push(t, k, id);
        }
        runs.finish();
        want
    }

    fn db() -> redb::Database {
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    /// Ids spread over every level: some share a millisecond, some an hour, some years apart,
    /// and random (v4-like) ones, in two tenants and two kinds.
    fn ids() -> Vec<u128> {
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        let mut out = Vec::new();
        let ms = |m: u128| m << 80;
        for i in 0..300u128 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(match i % 5 {
                0 => ms(1_700_000_000_000) | (x & ((1 << 80) - 1)),
                1 => ms(1_700_000_000_000 + (i % 7)) | (x & ((1 << 80) - 1)),
                2 => ms(1_700_000_000_000 + i * 3_600_000) | (x & ((1 << 80) - 1)),
                3 => ms(1_600_000_000_000 + i * 86_400_000 * 30) | (x & 0xFFFF),
                _ => x,
            });
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn every_position_is_found_after_creates_and_deletes() {
        let db = db();
        let ids = ids();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(T).unwrap();
            for (i, id) in ids.iter().enumerate() {
                bump(&mut t, "a", (i % 2) as u8, *id, true).unwrap();
                bump(&mut t, "b", 0, *id, true).unwrap();
            }
            // Delete every third of tenant b's.
            for id in ids.iter().step_by(3) {
                bump(&mut t, "b", 0, *id, false).unwrap();
            }
        }
        w.commit().unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(T).unwrap();
        let lists: Vec<(&str, u8, Vec<u128>)> = vec![
            ("a", 0, ids.iter().step_by(2).copied().collect()),
            ("a", 1, ids.iter().skip(1).step_by(2).copied().collect()),
            (
                "b",
                0,
                ids.iter()
                    .enumerate()
                    .filter(|(i, _)| i % 3 != 0)
                    .map(|(_, id)| *id)
                    .collect(),
            ),
            ("c", 0, Vec::new()),
        ];
        for (tenant, kind, list) in lists {
            for skip in 0..=list.len() {
                let got = locate(&t, tenant, kind, skip as u64).unwrap();
                if skip == list.len() {
                    assert_eq!(got, None, "{tenant}/{kind} past the end");
                    continue;
                }
                let (from, rest) = got.expect("inside the list");
                // Stepping `rest` over the ids from `from` lands on the skip-th one.
                let landed = list.iter().filter(|id| **id >= from).nth(rest as usize);
                assert_eq!(landed, Some(&list[skip]), "{tenant}/{kind} at {skip}");
                assert!(rest < 300, "only ids of one millisecond are stepped over");
            }
        }
    }

    #[test]
    fn deleting_everything_leaves_no_counts_and_runs_match_the_bumps() {
        let db = db();
        let ids = ids();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(T).unwrap();
            for id in &ids {
                bump(&mut t, "a", 0, *id, true).unwrap();
            }
            let want = expected(ids.iter().map(|id| ("a", 0u8, *id)));
            let have: BTreeMap<(String, u8, u8, u64), u64> = t
                .iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    let (a, b, c, d) = k.value();
                    ((a.to_string(), b, c, d), v.value())
                })
                .collect();
            assert_eq!(have, want);
            for id in &ids {
                bump(&mut t, "a", 0, *id, false).unwrap();
            }
            assert_eq!(t.len().unwrap(), 0);
        }
        w.commit().unwrap();
    }
}
