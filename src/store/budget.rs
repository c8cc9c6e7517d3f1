//! How long a scan may go on: until its deadline, `ListQuery::scan_limit` after it began.
//!
//! A filter of a few hundred `or`ed conditions no index serves took a minute to scan a
//! million users, holding one of its tenant's scan turns all the while, and went on after
//! its client had given up (the scan runs on a pool thread, and a client that hangs up is
//! not noticed while its request is served): a few such requests, retried, kept the
//! tenant's other scans waiting for good.

use std::cell::Cell;
use std::time::Instant;

/// Records visited between two looks at the clock: a thousand take about a millisecond,
/// and a look costs tens of nanoseconds.
const EVERY: u32 = 1024;

/// The bound of one scan. `go_on` is asked before each record.
pub(super) struct Budget {
    deadline: Option<Instant>,
    visited: Cell<u32>,
    cut: Cell<bool>,
}

impl Budget {
    pub(super) fn new(deadline: Option<Instant>) -> Budget {
        Budget {
            deadline,
            visited: Cell::new(0),
            cut: Cell::new(false),
        }
    }

    /// Whether to visit one more record. Once it says no it keeps saying no, so that every
    /// pass of a sort stops too.
    pub(super) fn go_on(&self) -> bool {
        if self.cut.get() {
            return false;
        }
        let n = self.visited.get();
        self.visited.set(n.wrapping_add(1));
        // The first record looks too: a deadline already past stops the scan at once.
        if n.is_multiple_of(EVERY) && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.cut.set(true);
            return false;
        }
        true
    }

    /// Whether the scan was stopped before its end: what it counted is not the answer.
    pub(super) fn cut(&self) -> bool {
        self.cut.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_scan_goes_on_until_its_deadline() {
        let soon = Instant::now() + Duration::from_millis(200);
        let b = Budget::new(Some(soon));
        assert!((0..10 * EVERY).all(|_| b.go_on()));
        assert!(!b.cut());
        std::thread::sleep(Duration::from_millis(250));
        // Noticed at the next look, within EVERY records.
        let went = (0..=EVERY).take_while(|_| b.go_on()).count();
        assert!(went < EVERY as usize, "went on for {went}");
        assert!(b.cut());
        assert!(!b.go_on(), "and stays stopped");

        let b = Budget::new(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!b.go_on(), "a deadline already past stops the first record");
        assert!(b.cut());

        let b = Budget::new(None);
        assert!((0..10 * EVERY).all(|_| b.go_on()), "no deadline, no limit");
        assert!(!b.cut());
    }
}
