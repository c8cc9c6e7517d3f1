//! A request body the handler left unread is read to its end before the answer goes out.
//!
//! An early answer (401, 413, 415) comes while the client is still sending. Over HTTP/2 the
//! stream is then reset, and clients that are mid-upload (curl 7.88, Python's h2) report a
//! protocol error instead of the answer; over HTTP/1.1 the connection is closed under them.
//! Reading and discarding the rest, up to a bound, lets every client read its answer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

/// The most of an unread body discarded before answering; beyond it the client is cut off.
pub const DRAIN_LIMIT: u64 = 16 << 20;

/// Where a [`Held`] body puts itself when dropped unfinished.
pub struct Slot<B>(Arc<Mutex<Option<(B, bool)>>>);

impl<B: Body> Slot<B> {
    /// Wrap `body` for the handler; [`Slot::take`] returns it afterwards if left unread.
    pub fn hold(body: B) -> (Slot<B>, Held<B>) {
        let slot = Arc::new(Mutex::new(None));
        let held = Held {
            inner: Some(body),
            polled: false,
            slot: slot.clone(),
        };
        (Slot(slot), held)
    }

    /// The body the handler left unread, and whether it had started reading it.
    pub fn take(&self) -> Option<(B, bool)> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

/// The request body as handlers see it.
pub struct Held<B: Body> {
    inner: Option<B>,
    /// Whether the handler started reading (and so hyper sent any `100 Continue`).
    polled: bool,
    slot: Arc<Mutex<Option<(B, bool)>>>,
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.polled = true;
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<B: Body> Drop for Held<B> {
    fn drop(&mut self) {
        if let Some(b) = self.inner.take().filter(|b| !b.is_end_stream()) {
            match self.slot.lock() {
                Ok(mut g) => *g = Some((b, self.polled)),
                Err(p) => *p.into_inner() = Some((b, self.polled)),
            }
        }
    }
}

/// Read `body` to its end and discard it, giving up past `limit` bytes or after `within`.
/// True when the whole body was read.
pub async fn drain<B>(mut body: B, limit: u64, within: Duration) -> bool
where
    B: Body + Unpin,
    B::Data: Buf,
{
    if body.size_hint().lower() > limit {
        return false;
    }
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(d) = frame.data_ref() {
                seen += d.remaining() as u64;
                if seen > limit {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}
