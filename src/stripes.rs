//! Counters that every request on every core adds to, split in stripes: each thread writes
//! its own and readers sum them. One counter (or lock) written from both cores moves its
//! cache line between them on each write, which cost more than the counting.

use std::sync::atomic::{AtomicUsize, Ordering};

pub const STRIPES: usize = 8;

/// The stripe this thread writes.
pub fn mine() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|m| *m)
}

/// A stripe alone on its cache lines (two, for the prefetcher that pulls lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);
