//! Counting the requests still being answered, so shutdown waits for them and not for idle
//! connections.
//!
//! hyper's graceful shutdown ends an HTTP/2 connection only after the client acknowledges the
//! closing PING. A client that holds an idle connection without reading it (Python's httpx,
//! for one) never does, and a stop then took the whole grace period though nothing was open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};

#[derive(Default)]
pub struct InFlight {
    open: AtomicUsize,
    started: AtomicU64,
}

impl InFlight {
    /// Count a request as open until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> Guard {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.open.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }

    /// Resolves once no request has been open, and none started, for `settle`: long enough
    /// for a request a client sent before it saw the server's GOAWAY to arrive.
    pub async fn settled(&self, settle: Duration) {
        loop {
            let started = self.started.load(Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(settle).await;
                if self.open.load(Ordering::SeqCst) == 0
                    && self.started.load(Ordering::SeqCst) == started
                {
                    return;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until it has been sent or dropped: a
/// streamed group is still being answered after the handler returned.
pub struct Counted<B> {
    body: B,
    _guard: Guard,
}

impl<B> Counted<B> {
    pub fn new(body: B, guard: Guard) -> Self {
        Counted {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn settles_only_after_the_last_request_and_a_quiet_spell() {
        let f = Arc::new(InFlight::default());
        let g = f.start();
        let settle = Duration::from_secs(1);
        // Open request: not settled, however long it runs.
        assert!(
            tokio::time::timeout(Duration::from_secs(30), f.settled(settle))
                .await
                .is_err()
        );
        drop(g);
        // A request that starts and ends within the quiet spell starts the spell again.
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.settled(settle).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(f.start());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!waiter.is_finished());
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(waiter.is_finished());
    }
}
