//! Keeping what a connection's client has not read yet bounded.
//!
//! A list page is built whole, up to `maxResults` resources, before hyper takes it, and hyper
//! holds it until the client reads it. An HTTP/2 client may open dozens of streams on one
//! connection and read none of them: without a bound, each stream held its own page (four
//! connections asking for a 21 MB page on each of 64 streams held 5.8 GB). So a connection builds
//! one page at a time, and not while its earlier answers still wait to be read past
//! `server.max_unread_mb`. A client that reads gets its pages; only that connection waits.
//!
//! Request bodies are held whole until parsed, and an HTTP/2 client could send 64 of them
//! per connection, each stopping a byte short (120 connections held 9.8 GB until their
//! 408s). So a body takes room for its declared length (or the largest allowed) from its
//! connection's share, its tenant's and the server's before it is read, always in that
//! order so that bodies holding part of what they need never wait on each other; one that
//! finds none waits, unread, which holds its sender back through flow control. With more
//! than one tenant, a tenant's share is half the server's: one tenant's clients sending
//! slowly (or its application's read token sending `.search` bodies a byte at a time)
//! cannot hold every other tenant's writes until their bodies time out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::scim::error::{ScimError, ScimResult};

/// How many bytes of whole answers a connection has handed out and not yet written, and all
/// connections together.
pub trait Unsent: Send + Sync {
    fn unsent(&self) -> u64;
    /// All connections that carried the token this one carried (one token of one tenant;
    /// this one's own before it carried any).
    fn unsent_of_reader(&self) -> u64;
    fn unsent_everywhere(&self) -> u64;
    /// Hold `n` more bytes as unsent: memory an answer keeps before hyper takes any of it
    /// (room a stream reads ahead into), counted until `release`d.
    fn hold(&self, n: u64);
    /// `n` bytes held are gone.
    fn release(&self, n: u64);
}

/// What a streamed answer (a group's members) may hold at once before its client reads
/// it: the store's batches read ahead and the rendered ones waiting for hyper. Counted as
/// unsent while the stream runs, so that a client opening many such streams and reading
/// none waits for room (or gets 503) like one asking for many pages.
pub const STREAM_AHEAD: u64 = 1 << 20;

/// Room a streamed answer holds (`STREAM_AHEAD`) until it ends.
pub struct Streaming {
    unsent: Arc<dyn Unsent>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.unsent.release(STREAM_AHEAD);
    }
}

/// All connections together may leave this many times a connection's limit unread (256 MiB
/// at the default) before any page is refused: many connections each reading a page slowly
/// (or not at all) would otherwise hold a page each, `max_connections` of them. Then only
/// pages asked for with tokens whose clients hold more than one connection's limit are
/// refused: one client reading nothing (an application's read token on many HTTP/2 streams)
/// must not hold other tenants' lookups, nor its own tenant's IdP's, until they are
/// dropped. The memory past the bound is then at most about a connection's limit a token.
/// Not lower: each group streamed counts the megabyte it may read ahead (`STREAM_AHEAD`),
/// and a benchmark's 64 clients of one token reading large groups at once count 64 MiB.
pub const EVERYWHERE: u64 = 16;

/// One connection's backlog, carried in each of its requests' extensions by the server.
#[derive(Clone)]
pub struct Backlog {
    unsent: Arc<dyn Unsent>,
    turn: Arc<Semaphore>,
    /// Request bodies this connection may be receiving at once.
    bodies: Room,
}

/// How many largest bodies one connection may be receiving at once, one tenant's
/// connections together, and the server.
pub const BODIES_PER_CONNECTION: usize = 8;
pub const BODIES_PER_TENANT: usize = BODIES_EVERYWHERE / 2;
/// And one tenant's read tokens together: an application's read token sending `.search`
/// bodies slowly must leave room for its own tenant's IdP, as for other tenants.
pub const BODIES_PER_READER: usize = BODIES_PER_TENANT / 2;
pub const BODIES_EVERYWHERE: usize = 16;

/// Room for request bodies, a permit a byte.
#[derive(Clone)]
pub struct Room {
    sem: Arc<Semaphore>,
    size: usize,
    /// The `max_body_bytes` it was sized for.
    largest: usize,
}

/// Room for `n` largest bodies of `max_body_bytes`.
pub fn body_room(n: usize, max_body_bytes: usize) -> Room {
    let size = n
        .saturating_mul(max_body_bytes)
        .clamp(1, Semaphore::MAX_PERMITS);
    Room {
        sem: Arc::new(Semaphore::new(size)),
        size,
        largest: max_body_bytes,
    }
}

impl Room {
    /// The largest body it was sized for.
    pub fn largest(&self) -> usize {
        self.largest
    }
}

/// Room a body holds: while it is received, for what it declared (the largest allowed
/// without a length), then for what it was, until its request is answered. What a write
/// holds meanwhile (the parsed body, the resource the store works from, the answer) grows
/// with its body: bounded so, many large writes at once wait for room instead of each
/// holding several copies of its body while they queue for the writer.
pub struct BodyRoom {
    held: Vec<OwnedSemaphorePermit>,
}

impl BodyRoom {
    /// Keep room for `bytes` only, the body's size once it is whole.
    pub fn shrink_to(&mut self, bytes: usize) {
        for p in &mut self.held {
            // Nothing to give back for a body that declared its length (most do).
            let extra = p.num_permits().saturating_sub(bytes.max(1));
            if extra > 0 {
                drop(p.split(extra));
            }
        }
    }
}

/// The right to build a page on this connection: the server drops it once it has counted
/// the page as unsent, so the connection's next page sees it.
#[derive(Clone)]
pub struct Turn {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// How often a connection over its limit looks again: only such connections ever wait.
const RECHECK: Duration = Duration::from_millis(10);

/// How often a waiting page sums its token's unread answers again.
const READER_RECHECK: Duration = Duration::from_millis(100);

impl Backlog {
    pub fn new(unsent: Arc<dyn Unsent>, max_body_bytes: usize) -> Backlog {
        Backlog {
            unsent,
            turn: Arc::new(Semaphore::new(1)),
            bodies: body_room(BODIES_PER_CONNECTION, max_body_bytes),
        }
    }

    /// Wait for room for a body of `bytes` (at most the largest allowed) in this
    /// connection's share (`conn`), those it is part of (`shared`, innermost first: its
    /// tenant's read tokens', its tenant's) and the server's (`everywhere`). Every caller
    /// takes them in this order, so none waits on a room another holds while waiting on one
    /// it holds.
    pub async fn body_room(
        conn: Option<&Backlog>,
        shared: &[&Room],
        everywhere: &Room,
        bytes: usize,
    ) -> BodyRoom {
        let mut held = Vec::new();
        for room in conn
            .map(|b| &b.bodies)
            .into_iter()
            .chain(shared.iter().copied())
            .chain([everywhere])
        {
            // Never more than the whole room: a reload may have raised `max_body_bytes`
            // since it was sized.
            let n = u32::try_from(bytes.clamp(1, room.size)).unwrap_or(u32::MAX);
            // Never closed.
            if let Ok(p) = room.sem.clone().acquire_many_owned(n).await {
                held.push(p);
            }
        }
        BodyRoom { held }
    }

    /// Wait until this connection may build a page: no other page of it is being built and
    /// at most `limit` bytes of its answers are unread; 503 after `wait`. 503 at once while
    /// all connections' answers unread are past `EVERYWHERE` times `limit` and this token's
    /// clients leave more than `limit` unread: each request of theirs waiting would hold its
    /// futures (several KiB; docs/performance.md, session 62) until it timed out.
    pub async fn turn(&self, limit: u64, wait: Duration) -> ScimResult<Turn> {
        let deadline = Instant::now() + wait;
        let permit = tokio::time::timeout_at(deadline, self.turn.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| self.unread(limit))?;
        // The token's sum walks every connection: asked at most every `READER_RECHECK`
        // while this page waits, not at every look.
        let mut reader_over: Option<(Instant, bool)> = None;
        let mut reader_over_now = || match reader_over {
            Some((at, over)) if at.elapsed() < READER_RECHECK => over,
            _ => {
                let over = self.unsent.unsent_of_reader() > limit;
                reader_over = Some((Instant::now(), over));
                over
            }
        };
        loop {
            if self.unsent.unsent_everywhere() > limit.saturating_mul(EVERYWHERE)
                && reader_over_now()
            {
                return Err(self.unread(limit));
            }
            if self.unsent.unsent() <= limit {
                break;
            }
            if Instant::now() + RECHECK > deadline {
                return Err(self.unread(limit));
            }
            tokio::time::sleep(RECHECK).await;
        }
        Ok(Turn {
            _permit: Arc::new(permit),
        })
    }

    /// Wait, as a page does (`turn`), for room for a streamed answer, and hold it.
    pub async fn stream_room(&self, limit: u64, wait: Duration) -> ScimResult<Streaming> {
        let turn = self.turn(limit, wait).await?;
        self.unsent.hold(STREAM_AHEAD);
        drop(turn);
        Ok(Streaming {
            unsent: self.unsent.clone(),
        })
    }

    fn unread(&self, limit: u64) -> ScimError {
        let mine = self.unsent.unsent();
        let detail = if mine > limit {
            format!(
                "this connection has {} KiB of answers its client has not read (the limit is \
                 {} KiB); read them before asking for more",
                mine / 1024,
                limit / 1024
            )
        } else {
            "the server holds too many answers its clients have not read; retry later".into()
        };
        ScimError::new(503, None, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// This connection's unread bytes, and all connections' (all its tenant's, unless
    /// `2` says how many of them are other tenants').
    struct Fake(AtomicU64, AtomicU64, AtomicU64);

    impl Fake {
        fn new(conn: u64, everywhere: u64) -> Fake {
            Fake(
                AtomicU64::new(conn),
                AtomicU64::new(everywhere),
                AtomicU64::new(0),
            )
        }
    }

    impl Unsent for Fake {
        fn unsent(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
        fn unsent_of_reader(&self) -> u64 {
            let others = self.2.load(Ordering::Relaxed);
            self.unsent_everywhere()
                .saturating_sub(others)
                .max(self.unsent())
        }
        fn unsent_everywhere(&self) -> u64 {
            self.1.load(Ordering::Relaxed).max(self.unsent())
        }
        fn hold(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
        fn release(&self, n: u64) {
            self.0.fetch_sub(n, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_page_at_a_time_and_none_while_too_much_is_unread() {
        let fake = Arc::new(Fake::new(0, 0));
        let b = Backlog::new(fake.clone(), 1024);
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
        let fake = Arc::new(Fake::new(4096 * 1024, 0));
        let b = Backlog::new(fake, 1024);
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

    #[tokio::test(start_paused = true)]
    async fn bodies_wait_for_room_on_their_connection_and_on_the_server() {
        let fake = || Arc::new(Fake::new(0, 0));
        let (a, b) = (Backlog::new(fake(), 1000), Backlog::new(fake(), 1000));
        let server = body_room(BODIES_PER_CONNECTION + 2, 1000);
        let tenant = body_room(BODIES_EVERYWHERE, 1000);
        let wait = Duration::from_secs(1);
        let room = |c: Backlog, n| {
            let (server, tenant) = (server.clone(), tenant.clone());
            async move {
                tokio::time::timeout(wait, Backlog::body_room(Some(&c), &[&tenant], &server, n))
                    .await
            }
        };
        // A connection's share is eight largest bodies...
        let mut held = Vec::new();
        for _ in 0..BODIES_PER_CONNECTION {
            held.push(room(a.clone(), 1000).await.unwrap());
        }
        assert!(room(a.clone(), 1).await.is_err());
        // ...another connection still has its own, until the server's is used up.
        held.push(room(b.clone(), 2000).await.unwrap());
        assert!(room(b.clone(), 1).await.is_err());
        held.pop();
        assert!(room(b.clone(), 1000).await.is_ok());
        // A body larger than a room (`max_body_bytes` raised by a reload) takes all of it.
        drop(held);
        assert!(room(a.clone(), 1_000_000).await.is_ok());
    }

    /// A body received keeps room for its own size only: bodies that declared no length
    /// (room for the largest) must not hold that much while their requests are carried out.
    #[tokio::test(start_paused = true)]
    async fn a_body_once_whole_keeps_room_for_its_size_only() {
        let c = Backlog::new(Arc::new(Fake::new(0, 0)), 1000);
        let server = body_room(BODIES_EVERYWHERE, 1000);
        let room = |n| {
            let (c, server) = (c.clone(), server.clone());
            async move {
                tokio::time::timeout(
                    Duration::from_secs(1),
                    Backlog::body_room(Some(&c), &[], &server, n),
                )
                .await
            }
        };
        let mut held = Vec::new();
        for _ in 0..BODIES_PER_CONNECTION {
            held.push(room(1000).await.unwrap());
        }
        assert!(room(1000).await.is_err());
        for h in &mut held {
            h.shrink_to(10);
        }
        // 80 bytes held of the connection's 8,000: seven more of the largest fit, not eight.
        for _ in 0..BODIES_PER_CONNECTION - 1 {
            held.push(room(1000).await.unwrap());
        }
        assert!(room(1000).await.is_err());
        assert!(room(920).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn one_tenants_bodies_leave_room_for_the_others() {
        let fake = || Arc::new(Fake::new(0, 0));
        let server = body_room(BODIES_EVERYWHERE, 1000);
        let (one, other) = (
            body_room(BODIES_PER_TENANT, 1000),
            body_room(BODIES_PER_TENANT, 1000),
        );
        let wait = Duration::from_secs(1);
        let room = |tenant: &Room| {
            let (server, tenant) = (server.clone(), tenant.clone());
            // Each body on a connection of its own, so only the tenant's and server's count.
            let c = Backlog::new(fake(), 1000);
            async move {
                tokio::time::timeout(
                    wait,
                    Backlog::body_room(Some(&c), &[&tenant], &server, 1000),
                )
                .await
            }
        };
        let mut held = Vec::new();
        for _ in 0..BODIES_PER_TENANT {
            held.push(room(&one).await.unwrap());
        }
        // The tenant's share is taken: its next body waits, another tenant's does not.
        assert!(room(&one).await.is_err());
        assert!(room(&other).await.is_ok());
        drop(held);
        assert!(room(&one).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn pages_are_refused_at_once_while_all_connections_together_hold_too_much() {
        let fake = Arc::new(Fake::new(0, EVERYWHERE * 100 + 1));
        let b = Backlog::new(fake.clone(), 1024);
        let asked = Instant::now();
        let e = b.turn(100, Duration::from_secs(60)).await.err().unwrap();
        // Not after the wait: a request waiting for room holds memory all the while.
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert_eq!(e.status, 503);
        assert!(e.detail.contains("the server holds"), "{}", e.detail);
        fake.1.store(EVERYWHERE * 100, Ordering::Relaxed);
        assert!(b.turn(100, Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_reading_its_answers_is_not_held_by_one_that_does_not() {
        // Over the server's bound, all of it another tenant's: this tenant's page is built.
        let fake = Arc::new(Fake::new(0, EVERYWHERE * 100 + 1));
        fake.2.store(EVERYWHERE * 100 + 1, Ordering::Relaxed);
        let b = Backlog::new(fake.clone(), 1024);
        assert!(b.turn(100, Duration::from_secs(1)).await.is_ok());
        // Its own clients holding more than a connection's limit, it waits as before.
        fake.2.store(EVERYWHERE * 100 + 1 - 101, Ordering::Relaxed);
        let e = b.turn(100, Duration::from_secs(1)).await.err().unwrap();
        assert_eq!(e.status, 503);
    }
}
