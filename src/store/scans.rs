//! What a scan of a filter no index answers learned, kept for the snapshot it ran in.
//!
//! Every page of such a filter needs `totalResults`, and counting means evaluating every
//! record of the tenant. Within one read snapshot the answer cannot change, so the next
//! pages of the same query (an application walking a million users by cursor, say) reuse
//! the count and a few bookmarks, and stop as soon as their page is full. The first write
//! ends the snapshot and, with it, everything remembered here.

use std::sync::{Arc, Mutex};

/// A bookmark every this many matches.
pub(super) const MARK_EVERY: usize = if cfg!(test) { 4 } else { 1024 };

/// How many scanned queries one snapshot remembers (the oldest is forgotten first).
const KEEP: usize = 8;

/// One counted scan.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) total: u64,
    /// `marks[i]` is the id of match number `i * MARK_EVERY` (from 0), in id order.
    pub(super) marks: Vec<u128>,
}

impl Scan {
    /// Note one more match, in id order.
    pub(super) fn count(&mut self, id: u128) {
        if self.total.is_multiple_of(MARK_EVERY as u64) {
            self.marks.push(id);
        }
        self.total += 1;
    }

    /// Where match number `skip` (from 0) can be found: the id to start reading at
    /// (inclusive) and how many matches from there to step over. `None` past the end.
    pub(super) fn seek(&self, skip: u64) -> Option<(u128, usize)> {
        if skip >= self.total {
            return None;
        }
        let mark = usize::try_from(skip / MARK_EVERY as u64).ok()?;
        let rest = usize::try_from(skip % MARK_EVERY as u64).ok()?;
        Some((*self.marks.get(mark)?, rest))
    }
}

/// The scans of one snapshot, by tenant, resource type and filter.
#[derive(Default)]
pub(super) struct ScanMemo(Mutex<Vec<(String, Arc<Scan>)>>);

impl ScanMemo {
    pub(super) fn get(&self, key: &str) -> Option<Arc<Scan>> {
        let memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        memo.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    pub(super) fn put(&self, key: String, scan: Scan) {
        let mut memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if memo.iter().any(|(k, _)| *k == key) {
            return; // a concurrent reader counted it too
        }
        if memo.len() == KEEP {
            memo.remove(0);
        }
        memo.push((key, Arc::new(scan)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_find_every_match_and_nothing_past_the_end() {
        let ids: Vec<u128> = (0..23).map(|i| 100 + 3 * i).collect();
        let mut scan = Scan::default();
        ids.iter().for_each(|&id| scan.count(id));
        assert_eq!(scan.total, 23);
        for (skip, &want) in ids.iter().enumerate() {
            let (from, rest) = scan.seek(skip as u64).unwrap();
            // Stepping over `rest` matches from `from` lands on match number `skip`.
            let at = ids.iter().position(|&i| i == from).unwrap();
            assert_eq!(ids[at + rest], want, "skip {skip}");
            assert!(rest < MARK_EVERY);
        }
        assert_eq!(scan.seek(23), None);
        assert_eq!(Scan::default().seek(0), None);
    }

    #[test]
    fn remembers_a_bounded_number_of_scans() {
        let memo = ScanMemo::default();
        for i in 0..=KEEP {
            let mut scan = Scan::default();
            scan.count(i as u128);
            memo.put(format!("q{i}"), scan);
        }
        assert!(memo.get("q0").is_none(), "the oldest is forgotten");
        assert_eq!(memo.get(&format!("q{KEEP}")).unwrap().total, 1);
        memo.put("q1".into(), Scan::default());
        assert_eq!(memo.get("q1").unwrap().total, 1, "the first count stays");
    }
}
