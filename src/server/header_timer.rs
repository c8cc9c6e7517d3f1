//! The timer behind hyper's HTTP/1 header timeout, without a timer registration per request.
//!
//! hyper arms that timeout each time it waits for a request head, and drops it once the head
//! is read: with tokio's timer, an insertion into the timer wheel and a removal for every
//! request, about 3% of a GET's CPU. A connection is only ever polled inside
//! `in_flight::drive`, whose one-second tick wakes the connection's task and so polls hyper
//! again; a deadline that only compares the clock when polled is therefore noticed within a
//! second of passing, for the cost of reading the clock.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// For HTTP/1 only: its sleeps are woken by nothing of their own (see the module's comment).
/// HTTP/2's keep-alive pings need real wake-ups and keep tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderTimer;

/// Ready once the clock has passed its instant, as seen when polled.
struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // No waker is kept: the connection's tick polls again (module comment).
        match now() >= self.0 {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

/// tokio's clock, so that a test with paused time moves it too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline(now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline(deadline))
    }

    fn now(&self) -> Instant {
        now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(d) => d.get_mut().0 = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn poll(s: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> Poll<()> {
        s.as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_is_ready_once_its_deadline_has_passed_and_not_before() {
        let t = HeaderTimer;
        let mut s = t.sleep(Duration::from_secs(15));
        assert_eq!(poll(&mut s), Poll::Pending);
        tokio::time::advance(Duration::from_millis(14_999)).await;
        assert_eq!(poll(&mut s), Poll::Pending);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(poll(&mut s), Poll::Ready(()));

        // Reset to a later deadline, it is waiting again.
        t.reset(&mut s, t.now() + Duration::from_secs(2));
        assert_eq!(poll(&mut s), Poll::Pending);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(poll(&mut s), Poll::Ready(()));
    }
}
