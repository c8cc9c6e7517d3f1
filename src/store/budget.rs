//! How long a scan may go on: until its deadline, `ListQuery::scan_limit` after it began, or
//! until the request it serves is gone.
//!
//! A filter of a few hundred `or`ed conditions no index serves took a minute to scan a
//! million users, holding one of its tenant's scan turns all the while: a few such
//! requests, retried, kept the tenant's other scans waiting for good. The scan runs on a
//! pool thread, which dropping the request's future does not stop; so the future holds a
//! `Hangup`, and the scan looks at the `Watch` it shares with it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

/// Records visited between two looks at the clock: a thousand take about a millisecond,
/// and a look costs tens of nanoseconds.
const EVERY: u32 = 1024;

/// Why a scan stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// It read for as long as a request may take.
    Deadline,
    /// The request it served was dropped: its client hung up or reset the stream.
    Gone,
}

/// What a read on the pool shares with the request it serves: whether the request still
/// waits for it, and why a scan of it stopped.
#[derive(Debug, Default)]
pub(super) struct Watch {
    gone: AtomicBool,
    /// 0: not stopped; 1: `Deadline`; 2: `Gone`.
    stopped: AtomicU8,
}

thread_local! {
    /// The watch of the read this pool thread runs (`Watch::run`), for the budgets it makes.
    static WATCHED: RefCell<Option<Arc<Watch>>> = const { RefCell::new(None) };
}

impl Watch {
    /// Run `f` on this thread with its budgets watching `self`. A thread-local, because
    /// budgets are made deep inside the read closures, which every pooled read shares.
    pub(super) fn run<T>(self: &Arc<Self>, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                WATCHED.with(|w| *w.borrow_mut() = None);
            }
        }
        WATCHED.with(|w| *w.borrow_mut() = Some(self.clone()));
        let _reset = Reset;
        f()
    }

    /// Why a scan of this read stopped early, if one did.
    pub(super) fn stopped(&self) -> Option<Stop> {
        match self.stopped.load(Ordering::Relaxed) {
            1 => Some(Stop::Deadline),
            2 => Some(Stop::Gone),
            _ => None,
        }
    }

    fn stop(&self, why: Stop) {
        let code = match why {
            Stop::Deadline => 1,
            Stop::Gone => 2,
        };
        self.stopped.store(code, Ordering::Relaxed);
    }
}

/// Held by the request's future while its read runs on the pool: dropped with the future
/// (hyper drops it when the client hangs up or resets the stream), it tells the read's
/// scans to stop. Dropped after the read has finished, it tells no one anything.
pub(super) struct Hangup(pub(super) Arc<Watch>);

impl Drop for Hangup {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::Relaxed);
    }
}

/// The bound of one scan. `go_on` is asked before each record.
pub(super) struct Budget {
    deadline: Option<Instant>,
    watch: Option<Arc<Watch>>,
    visited: Cell<u32>,
    cut: Cell<bool>,
}

impl Budget {
    /// A scan's bound: `deadline`, and the request of the read it runs in, if any.
    pub(super) fn new(deadline: Option<Instant>) -> Budget {
        Budget {
            deadline,
            watch: WATCHED.with(|w| w.borrow().clone()),
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
        if !n.is_multiple_of(EVERY) {
            return true;
        }
        let why = if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Stop::Deadline
        } else if self
            .watch
            .as_ref()
            .is_some_and(|w| w.gone.load(Ordering::Relaxed))
        {
            Stop::Gone
        } else {
            return true;
        };
        if let Some(w) = &self.watch {
            w.stop(why);
        }
        self.cut.set(true);
        false
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
        // A second: ten looks at the clock take microseconds, unless the machine is loaded.
        let soon = Instant::now() + Duration::from_secs(1);
        let b = Budget::new(Some(soon));
        assert!((0..10 * EVERY).all(|_| b.go_on()));
        assert!(!b.cut());
        std::thread::sleep(
            soon.saturating_duration_since(Instant::now()) + Duration::from_millis(50),
        );
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

    #[test]
    fn a_scan_stops_once_its_request_is_gone() {
        let watch = Arc::new(Watch::default());
        let hangup = Hangup(watch.clone());
        watch.run(|| {
            let b = Budget::new(None);
            assert!((0..10 * EVERY).all(|_| b.go_on()));
            drop(hangup);
            let went = (0..=EVERY).take_while(|_| b.go_on()).count();
            assert!(went < EVERY as usize, "went on for {went}");
            assert!(b.cut() && !b.go_on());
        });
        assert_eq!(watch.stopped(), Some(Stop::Gone));
        // Outside `run` a budget watches nothing.
        let b = Budget::new(None);
        assert!(b.watch.is_none());

        // A deadline is told as such.
        let watch = Arc::new(Watch::default());
        let _hangup = Hangup(watch.clone());
        watch.run(|| {
            let b = Budget::new(Some(Instant::now() - Duration::from_millis(1)));
            assert!(!b.go_on());
        });
        assert_eq!(watch.stopped(), Some(Stop::Deadline));
        // A read that finished is not stopped, whenever its request goes.
        let watch = Arc::new(Watch::default());
        watch.run(|| assert!(Budget::new(None).go_on()));
        drop(Hangup(watch.clone()));
        assert_eq!(watch.stopped(), None);
    }
}
