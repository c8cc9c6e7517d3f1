//! Keeping what a connection's client has not read yet bounded.
//!
//! A list page is built whole, up to `maxResults` resources, before hyper takes it, and hyper
//! holds it until the client reads it. An HTTP/2 client may open dozens of streams on one
//! connection and read none of them: without a bound, each stream held its own page (four
//! connections asking for a 21 MB page on each of 64 streams held 5.8 GB). So a connection builds
//! one page at a time, and not while its earlier answers still wait to be read past
//! `server.max_unread_mb`. A client that reads gets its pages; only that connection waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::scim::error::{ScimError, ScimResult};

/// How many bytes of whole answers a connection has handed out and not yet written.
pub trait Unsent: Send + Sync {
    fn unsent(&self) -> u64;
}

/// One connection's backlog, carried in each of its requests' extensions by the server.
#[derive(Clone)]
pub struct Backlog {
    unsent: Arc<dyn Unsent>,
    turn: Arc<Semaphore>,
}

/// The right to build a page on this connection: the server drops it once it has counted
/// the page as unsent, so the connection's next page sees it.
#[derive(Clone)]
pub struct Turn {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// How often a connection over its limit looks again: only such connections ever wait.
const RECHECK: Duration = Duration::from_millis(10);

impl Backlog {
    pub fn new(unsent: Arc<dyn Unsent>) -> Backlog {
        Backlog {
            unsent,
            turn: Arc::new(Semaphore::new(1)),
        }
    }

    /// Wait until this connection may build a page: no other page of it is being built and
    /// at most `limit` bytes of its answers are unread. 503 after `wait`.
    pub async fn turn(&self, limit: u64, wait: Duration) -> ScimResult<Turn> {
        let deadline = Instant::now() + wait;
        let permit = tokio::time::timeout_at(deadline, self.turn.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| self.unread(limit))?;
        while self.unsent.unsent() > limit {
            if Instant::now() + RECHECK > deadline {
                return Err(self.unread(limit));
            }
            tokio::time::sleep(RECHECK).await;
        }
        Ok(Turn {
            _permit: Arc::new(permit),
        })
    }

    fn unread(&self, limit: u64) -> ScimError {
        ScimError::new(
            503,
            None,
            format!(
                "this connection has {} KiB of answers its client has not read (the limit is \
                 {} KiB); read them before asking for more",
                self.unsent.unsent() / 1024,
                limit / 1024
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fake(AtomicU64);

    impl Unsent for Fake {
        fn unsent(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_page_at_a_time_and_none_while_too_much_is_unread() {
        let fake = Arc::new(Fake(AtomicU64::new(0)));
        let b = Backlog::new(fake.clone());
        let first = b.turn(100, Duration::from_secs(5)).await.unwrap();
        // A second page waits for the first's turn...
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.turn(100, Duration::from_secs(5)).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        // ...and, once the first is counted, for its bytes to be read.
        fake.0.store(500, Ordering::Relaxed);
        drop(first);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        fake.0.store(50, Ordering::Relaxed);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_gets_503_after_the_wait() {
        let fake = Arc::new(Fake(AtomicU64::new(4096 * 1024)));
        let b = Backlog::new(fake);
        let started = Instant::now();
        let e = b
            .turn(1024 * 1024, Duration::from_secs(3))
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, 503);
        assert!(e.detail.contains("4096 KiB"), "{}", e.detail);
        assert!(started.elapsed() >= Duration::from_millis(2990));
        assert!(started.elapsed() <= Duration::from_secs(3));
    }
}
