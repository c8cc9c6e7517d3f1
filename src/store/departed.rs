//! Tenants taken out of the configuration whose data the database keeps: remembered, so that
//! one whose table comes back while scimd is stopped is noticed at the next start (a reload
//! compares with the configuration it replaces; a start has none to compare with).

use std::collections::BTreeSet;

use redb::{ReadableTable, Table};

use super::read::{ReadSide, tenants_with_data};
use super::tables::{COUNTS, META};
use super::{Error, Store};

fn key(tenant: &str) -> String {
    format!("departed/{tenant}")
}

/// The tenants marked as taken out of the configuration.
fn marked(meta: &impl ReadableTable<&'static str, u64>) -> Result<BTreeSet<String>, redb::Error> {
    // '0' follows '/': every key with the prefix, and none after.
    let mut names = BTreeSet::new();
    for e in meta.range("departed/".."departed0")? {
        let (k, _) = e?;
        if let Some(t) = k.value().strip_prefix("departed/") {
            names.insert(t.to_string());
        }
    }
    Ok(names)
}

/// What to mark, and which marks to take out: tenants with data the configuration lacks
/// get one; a configured tenant's goes (it is back), and so does one with no data left (a
/// purge). Returns (to mark, to unmark, back with data).
fn changes(
    configured: &BTreeSet<String>,
    stored: &BTreeSet<String>,
    marked: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mark = (stored.iter())
        .filter(|t| !configured.contains(*t) && !marked.contains(*t))
        .cloned()
        .collect();
    let unmark = (marked.iter())
        .filter(|t| configured.contains(*t) || !stored.contains(*t))
        .cloned()
        .collect();
    let back = (marked.iter())
        .filter(|t| configured.contains(*t) && stored.contains(*t))
        .cloned()
        .collect();
    (mark, unmark, back)
}

fn apply(
    meta: &mut Table<&'static str, u64>,
    mark: &[String],
    unmark: &[String],
) -> Result<(), redb::Error> {
    for t in mark {
        meta.insert(key(t).as_str(), 1)?;
    }
    for t in unmark {
        meta.remove(key(t).as_str())?;
    }
    Ok(())
}

impl Store {
    /// Note which tenants with data `configured` lacks, and return those it has again since
    /// they were noted (with data still under their names). Only a change writes.
    pub async fn tenants_back(&self, configured: Vec<String>) -> Result<Vec<String>, Error> {
        let configured: BTreeSet<String> = configured.into_iter().collect();
        let look = |r: &ReadSide| -> Result<_, redb::Error> {
            let meta = r.txn().open_table(META)?;
            let counts = r.txn().open_table(COUNTS)?;
            let stored = tenants_with_data(&counts)?.into_iter().collect();
            Ok(changes(&configured, &stored, &marked(&meta)?))
        };
        let (mark, unmark, _) = self.read_now(|r| Ok(Ok(look(r)?)))?;
        if mark.is_empty() && unmark.is_empty() {
            return Ok(Vec::new());
        }
        self.write(String::new(), move |w| {
            // Looked at again inside the write: what the read saw may have changed.
            let stored = tenants_with_data(&w.counts)?.into_iter().collect();
            let mut meta = w.txn.open_table(META)?;
            let (mark, unmark, back) = changes(&configured, &stored, &marked(&meta)?);
            apply(&mut meta, &mark, &unmark)?;
            Ok(Ok(back))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_tenant_with_data_taken_out_is_marked_and_noticed_when_back() {
        // acme configured; old has data but is not configured; gone was purged.
        let (configured, stored) = (set(&["acme", "back"]), set(&["acme", "old", "back"]));
        let marked = set(&["back", "gone"]);
        let (mark, unmark, back) = changes(&configured, &stored, &marked);
        assert_eq!(mark, vec!["old"]);
        assert_eq!(unmark, vec!["back", "gone"]);
        assert_eq!(back, vec!["back"]);
        // Marked already, nothing to do.
        let (mark, unmark, back) = changes(&set(&["acme"]), &set(&["acme", "old"]), &set(&["old"]));
        assert!(mark.is_empty() && unmark.is_empty() && back.is_empty());
    }
}
