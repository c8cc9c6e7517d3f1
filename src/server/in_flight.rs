//! Counting the requests each connection is answering, so that a stop waits for requests and
//! not for idle connections, and a connection that is idle or stalled is closed.
//!
//! hyper's own timers do not cover three cases:
//! - a connection that finishes the TLS handshake and then sends nothing is never timed out
//!   (the header timeout starts with the first byte), so such connections used up the
//!   connection slots;
//! - an HTTP/2 connection without streams stays open as long as its client acknowledges
//!   PINGs, and one whose client never reads held a stop for the whole grace period;
//! - an HTTP/2 client that opens its flow-control window no further keeps its answers in
//!   memory for as long as it likes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{Notify, watch};

/// Requests open on one connection (or, as a parent, on all of them).
pub struct InFlight {
    open: AtomicUsize,
    started: AtomicU64,
    /// Milliseconds since `epoch` at the last sign of life: a request started or ended, or a
    /// piece of an answer taken by the connection.
    stirred: AtomicU64,
    epoch: Instant,
    parent: Option<Arc<InFlight>>,
    none_open: Notify,
}

impl InFlight {
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight::with_parent(None))
    }

    /// A connection's own count, which also counts in `self`.
    pub fn child(self: &Arc<Self>) -> Arc<InFlight> {
        Arc::new(InFlight::with_parent(Some(self.clone())))
    }

    fn with_parent(parent: Option<Arc<InFlight>>) -> InFlight {
        InFlight {
            open: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            stirred: AtomicU64::new(0),
            epoch: Instant::now(),
            parent,
            none_open: Notify::new(),
        }
    }

    /// Count a request as open until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> Guard {
        let mut at = Some(self);
        while let Some(f) = at {
            f.started.fetch_add(1, Ordering::SeqCst);
            f.open.fetch_add(1, Ordering::SeqCst);
            at = f.parent.as_ref();
        }
        self.stir();
        Guard(self.clone())
    }

    fn stir(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.stirred.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.stirred.load(Ordering::Relaxed)))
    }

    /// Resolves once no request has been open, and none started, for `settle`: long enough
    /// for a request a client sent before it saw the server's GOAWAY to arrive.
    pub async fn settled(&self, settle: Duration) {
        loop {
            let none_open = self.none_open.notified();
            tokio::pin!(none_open);
            // Registered before the count is read, so the last guard's drop is not missed.
            none_open.as_mut().enable();
            let started = self.started.load(Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(settle).await;
                if self.open.load(Ordering::SeqCst) == 0
                    && self.started.load(Ordering::SeqCst) == started
                {
                    return;
                }
            } else {
                none_open.await;
            }
        }
    }
}

pub struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.stir();
        let mut at = Some(&self.0);
        while let Some(f) = at {
            if f.open.fetch_sub(1, Ordering::SeqCst) == 1 {
                f.none_open.notify_waiters();
            }
            at = f.parent.as_ref();
        }
    }
}

/// A response body that keeps its request counted until it has been sent or dropped (a
/// streamed group is still being answered after the handler returned), and shows the
/// connection alive each time a piece of it is taken.
pub struct Counted<B> {
    body: B,
    guard: Guard,
}

impl<B> Counted<B> {
    pub fn new(body: B, guard: Guard) -> Self {
        Counted { body, guard }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(_)) = polled {
            self.guard.0.stir();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When a connection is closed for want of activity.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// No request open and none started for this long: closed (politely: GOAWAY, or at once
    /// for HTTP/1.1); and if it still has not ended this much later, dropped.
    pub idle: Duration,
    /// Requests open but no piece of any answer taken for this long: the client has stopped
    /// reading, and the connection is dropped with what it holds.
    pub stalled: Duration,
}

/// Serve one connection until it ends, is idle or stalled past `limits`, or the stop is over
/// (`closed`); from `stopping` on, it finishes its open requests and takes no new ones.
pub async fn drive<C>(
    conn: C,
    flight: Arc<InFlight>,
    limits: Timeouts,
    peer: std::net::SocketAddr,
    mut stopping: watch::Receiver<bool>,
    mut closed: watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut winding_down: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closed.wait_for(|c| *c) => return,
            _ = stopping.wait_for(|s| *s), if winding_down.is_none() => {
                conn.as_mut().graceful_shutdown();
                winding_down = Some(Instant::now());
            }
            _ = tick.tick() => {
                let open = flight.open.load(Ordering::SeqCst) > 0;
                let quiet = flight.quiet_for();
                if open && quiet >= limits.stalled {
                    tracing::warn!(%peer, secs = quiet.as_secs(), "closing a connection whose answers have not moved: the client stopped reading");
                    return;
                }
                match winding_down {
                    None if !open && quiet >= limits.idle => {
                        conn.as_mut().graceful_shutdown();
                        winding_down = Some(Instant::now());
                    }
                    // An HTTP/2 client that never acknowledges the GOAWAY's PING.
                    Some(since) if !open && since.elapsed() >= limits.idle => return,
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn settles_only_after_the_last_request_and_a_quiet_spell() {
        let all = InFlight::new();
        let f = all.child();
        let g = f.start();
        let settle = Duration::from_secs(1);
        // Open request: neither the connection nor the whole settles, however long it runs.
        assert!(
            tokio::time::timeout(Duration::from_secs(30), all.settled(settle))
                .await
                .is_err()
        );
        drop(g);
        // A request that starts and ends within the quiet spell starts the spell again.
        let waiter = tokio::spawn({
            let all = all.clone();
            async move { all.settled(settle).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(f.start());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!waiter.is_finished());
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(waiter.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_guard_wakes_a_waiter_at_once() {
        let f = InFlight::new();
        let g = f.start();
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.settled(Duration::from_millis(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        drop(g);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiter.is_finished());
    }
}
