//! What a scan of a filter no index answers learned, kept for the snapshot it ran in.
//!
//! Every page of such a filter needs `totalResults`, and counting means evaluating every
//! record of the tenant. Within one read snapshot the answer cannot change, so the next
//! pages of the same query (an application walking a million users by cursor, say) reuse
//! the count and bookmarks, and stop as soon as their page is full. The first write
//! ends the snapshot and, with it, everything remembered here.

use std::sync::{Arc, Mutex};

/// Most bookmarks one scan keeps. When they would be more, every other one is dropped and
/// the spacing doubles: a page then starts within `records / MAX_MARKS` records of its
/// first match, however sparse the matches are (a bookmark every fixed number of matches
/// left a filter matching a few hundred users to rescan most of the tenant for each page).
pub(super) const MAX_MARKS: usize = if cfg!(test) { 4 } else { 4096 };

/// How many scanned queries one snapshot remembers (the oldest is forgotten first).
const KEEP: usize = 8;

/// One counted scan.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) total: u64,
    /// Matches between bookmarks: a power of two.
    stride: u64,
    /// `marks[i]` is the id of match number `i * stride` (from 0), in id order.
    marks: Vec<u128>,
}

impl Default for Scan {
    fn default() -> Scan {
        Scan {
            total: 0,
            stride: 1,
            marks: Vec::new(),
        }
    }
}

impl Scan {
    /// Note one more match, in id order.
    pub(super) fn count(&mut self, id: u128) {
        if self.total.is_multiple_of(self.stride) {
            self.marks.push(id);
            if self.marks.len() > MAX_MARKS {
                // Match numbers 0, 2s, 4s, ... stay: the marks of stride 2s.
                let mut i = 0;
                self.marks.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.total += 1;
    }

    /// Where match number `skip` (from 0) can be found: the id to start reading at
    /// (inclusive) and how many matches from there to step over. `None` past the end.
    pub(super) fn seek(&self, skip: u64) -> Option<(u128, usize)> {
        if skip >= self.total {
            return None;
        }
        let mark = usize::try_from(skip / self.stride).ok()?;
        let rest = usize::try_from(skip % self.stride).ok()?;
        Some((*self.marks.get(mark)?, rest))
    }
}

/// The scans of one snapshot, by tenant, resource type and filter.
#[derive(Default)]
pub(super) struct ScanMemo(Mutex<Vec<(String, Arc<Scan>)>>);

impl ScanMemo {
    pub(super) fn get(&self, key: &str) -> Option<Arc<Scan>> {
        let memo = super::locked(&self.0);
        memo.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    pub(super) fn put(&self, key: String, scan: Scan) {
        let mut memo = super::locked(&self.0);
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
        for n in [0, 1, 3, 4, 5, 9, 23, 64] {
            let ids: Vec<u128> = (0..n).map(|i| 100 + 3 * i).collect();
            let mut scan = Scan::default();
            ids.iter().for_each(|&id| scan.count(id));
            assert_eq!(scan.total, n as u64);
            assert!(scan.marks.len() <= MAX_MARKS);
            // Few matches keep a mark each; more, one every few, evenly.
            let stride = (n as u64)
                .div_ceil(MAX_MARKS as u64)
                .max(1)
                .next_power_of_two();
            assert_eq!(scan.stride, stride, "{n} matches");
            for (skip, &want) in ids.iter().enumerate() {
                let (from, rest) = scan.seek(skip as u64).unwrap();
                // Stepping over `rest` matches from `from` lands on match number `skip`.
                let at = ids.iter().position(|&i| i == from).unwrap();
                assert_eq!(ids[at + rest], want, "{n} matches, skip {skip}");
                assert!((rest as u64) < scan.stride);
            }
            assert_eq!(scan.seek(n as u64), None);
        }
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
