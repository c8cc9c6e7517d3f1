//! Watching what each connection is doing, so that a stop waits for requests and answers
//! still on their way but not for idle connections, and a connection that is idle or stalled
//! is closed.
//!
//! hyper's own timers do not cover three cases:
//! - a connection that finishes the TLS handshake and then sends nothing is never timed out
//!   (the header timeout starts with the first byte), so such connections used up the
//!   connection slots;
//! - an HTTP/2 connection without streams stays open as long as its client acknowledges
//!   PINGs, and one whose client never reads held a stop for the whole grace period;
//! - an HTTP/2 client that opens its flow-control window no further keeps its answers in
//!   memory for as long as it likes.
//!
//! A handler's answer leaves the request long before it reaches the client: hyper takes a
//! whole body at once and writes it as the client reads. So progress is counted where the
//! bytes go out, on the socket, and only in earnest amounts: PING acknowledgements must not
//! keep an idle connection alive.
//!
//! It also knows each connection's age and whether it has carried a valid token, so that
//! when every slot is taken the oldest stranger can make room (see `http::vouch`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
// tokio's clock, so that the tests can move it.
use tokio::time::Instant;

use super::chatter::{Chatter, Verdict};
use super::frames::Framing;
use super::streams::Streams;

/// Bytes written that count as an answer moving (a PING acknowledgement is 17).
const EARNEST: u64 = 4096;

/// How long a connection that has shown no valid token is safe from being closed for a
/// newcomer: time for a handshake and a first request, even from far away.
pub const STRANGER_GRACE: Duration = Duration::from_secs(1);

/// How long a connection closed to make room, having carried a token, has to finish what it
/// was answering: a write reaches the database in milliseconds, a body still arriving a byte
/// at a time would not be done in minutes.
pub const EVICTED_GRACE: Duration = Duration::from_secs(1);

/// How long a connection that has said nothing yet is safe: an IdP's ClientHello arrives
/// about half a round trip after its connection is accepted. Without it, a newcomer's
/// arrival closed the connection accepted just before it (most likely a real client not
/// yet heard) whenever strangers that had spoken held the other slots.
pub const SILENT_GRACE: Duration = Duration::from_millis(250);

/// One connection's requests and progress (or, as a parent, all connections').
pub struct InFlight {
    open: AtomicUsize,
    /// Of the open requests, those whose answer is still being worked out (reading the
    /// body, waiting for a turn, a scan): a connection quiet for them is not stalled by its
    /// client. This connection's own count (not kept in the parent).
    thinking: AtomicUsize,
    started: AtomicU64,
    /// Milliseconds since `epoch` at the last sign of progress: a request started or ended,
    /// or `EARNEST` bytes written.
    stirred: AtomicU64,
    /// Milliseconds since `epoch` when a request last started or ended, or bytes of an
    /// answer went out: what a connection is idle since. Other writes do not count, as PING
    /// acknowledgements are writes too.
    asked: AtomicU64,
    /// Bytes written since progress was last marked.
    unmarked: AtomicU64,
    /// Bytes of whole answers handed to hyper and not yet written to the socket (for a
    /// parent, all its connections').
    unsent: AtomicU64,
    /// Of `unsent`, what answers hold that hyper has not taken yet (`hold`): this
    /// connection's own count.
    held: AtomicU64,
    /// Connections whose last write or flush found the socket full (for a connection, 0 or
    /// 1): there is more to send, and the client has not taken what went before.
    blocked: AtomicUsize,
    epoch: Instant,
    parent: Option<Arc<InFlight>>,
    none_open: Notify,
    /// A request on this connection carried a valid token, and none was refused since.
    vouched: AtomicBool,
    /// The tenant whose token it carried, counted in the parent's `vouched_by`.
    vouched_for: Mutex<Option<String>>,
    /// The tenant and the name of the token it carried first, safe or not: whose answers
    /// its unread ones are (`Unsent::unsent_of_reader`).
    reader: OnceLock<(String, String)>,
    /// For a parent: how many connections each tenant's tokens vouched for, and how many
    /// one tenant may have vouched for at once (0: no bound).
    vouched_by: Mutex<HashMap<String, usize>>,
    vouch_cap: AtomicUsize,
    /// The client has sent something (a TLS ClientHello, a request line).
    spoke: AtomicBool,
    /// Told to close to make room for a newcomer.
    evicted: AtomicBool,
    evict: Notify,
    /// Its client sent HTTP/2 control frames past its budget (`chatter`).
    hushed: AtomicBool,
    hush: Notify,
    /// This connection's place in its parent's `children`, oldest first.
    serial: u64,
    /// Milliseconds since `epoch` when it was accepted.
    born: u64,
    /// For a parent: its connections, by age.
    children: Mutex<BTreeMap<u64, Weak<InFlight>>>,
    next_serial: AtomicU64,
}

impl InFlight {
    pub fn new() -> Arc<InFlight> {
        Arc::new(InFlight::with_parent(None))
    }

    /// At most `n` connections of one tenant are safe from being closed for a newcomer
    /// (see `vouch`): the tokens of one tenant, its application's read token among them,
    /// must not be able to hold every slot and keep the other tenants' IdPs out.
    pub fn cap_vouched_per_tenant(&self, n: usize) {
        self.vouch_cap.store(n, Ordering::Relaxed);
    }

    /// A connection's own count, which also counts in `self`.
    pub fn child(self: &Arc<Self>) -> Arc<InFlight> {
        let child = Arc::new(InFlight::with_parent(Some(self.clone())));
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(child.serial, Arc::downgrade(&child));
        child
    }

    fn with_parent(parent: Option<Arc<InFlight>>) -> InFlight {
        let epoch = parent.as_ref().map_or_else(Instant::now, |p| p.epoch);
        let serial = parent
            .as_ref()
            .map_or(0, |p| p.next_serial.fetch_add(1, Ordering::Relaxed));
        let f = InFlight {
            open: AtomicUsize::new(0),
            thinking: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            stirred: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            unmarked: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            held: AtomicU64::new(0),
            blocked: AtomicUsize::new(0),
            epoch,
            parent,
            none_open: Notify::new(),
            vouched: AtomicBool::new(false),
            vouched_for: Mutex::new(None),
            reader: OnceLock::new(),
            vouched_by: Mutex::new(HashMap::new()),
            vouch_cap: AtomicUsize::new(0),
            spoke: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            hushed: AtomicBool::new(false),
            hush: Notify::new(),
            serial,
            born: epoch.elapsed().as_millis() as u64,
            children: Mutex::new(BTreeMap::new()),
            next_serial: AtomicU64::new(0),
        };
        f.ask();
        f
    }

    /// Count a request as open until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> Guard {
        for f in self.lineage() {
            f.started.fetch_add(1, Ordering::SeqCst);
            f.open.fetch_add(1, Ordering::SeqCst);
        }
        self.thinking.fetch_add(1, Ordering::SeqCst);
        self.ask();
        Guard {
            flight: self.clone(),
            thinking: true,
        }
    }

    fn lineage(&self) -> impl Iterator<Item = &InFlight> {
        std::iter::successors(Some(self), |f| f.parent.as_deref())
    }

    /// Milliseconds since `epoch`.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Mark progress here and in the parent.
    fn stir(&self) {
        self.stir_at(self.now());
    }

    fn stir_at(&self, now: u64) {
        for f in self.lineage() {
            // Read first: at thousands of requests a second most marks fall in the same
            // millisecond, and a store would take the parent's cache line from the other
            // cores each time.
            if f.stirred.load(Ordering::Relaxed) != now {
                f.stirred.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Mark a request started or ended (which is progress too). One look at the clock for
    /// both marks: this runs twice a request.
    fn ask(&self) {
        let now = self.now();
        self.stir_at(now);
        self.asked.store(now, Ordering::Relaxed);
    }

    /// Mark the connection in use now (see `asked`).
    fn in_use(&self) {
        self.asked.store(self.now(), Ordering::Relaxed);
    }

    fn wrote(&self, n: usize) {
        // An answer handed to hyper whole is still going out (its request has ended, and
        // over HTTP/2 a client's window paces it): the connection is in use. Bytes that
        // never go out (a stream reset after hyper took them) are paid off by any writes,
        // forgotten when hyper lets go of a body early (`forget`), and dropped once no
        // stream is left open (`streams_ended`).
        if self.unsent.load(Ordering::Relaxed) > 0 {
            self.in_use();
        }
        // Headers, framing and TLS records go out too, so this may run to zero early by a
        // little: it is a bound on memory, not an account.
        self.unowe(n as u64);
        let total = self.unmarked.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total >= EARNEST {
            self.unmarked.store(0, Ordering::Relaxed);
            self.stir();
        }
    }

    /// Whether a write was refused for want of room (`true`) or went through (`false`).
    fn blocked(&self, now: bool) {
        // Called on every write and flush: a read first spares the common unchanged case
        // a read-modify-write.
        if self.blocked.load(Ordering::Relaxed) == usize::from(now) {
            return;
        }
        let was = self.blocked.swap(usize::from(now), Ordering::SeqCst) == 1;
        if was != now
            && let Some(p) = &self.parent
        {
            if now {
                p.blocked.fetch_add(1, Ordering::SeqCst);
            } else {
                p.blocked.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Requests open, or an answer waiting for the client to read: what is quiet now is
    /// stalled, not idle.
    fn owes(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0 || self.blocked.load(Ordering::SeqCst) > 0
    }

    /// Every open request is still being answered: nothing is waiting on the client.
    fn all_thinking(&self) -> bool {
        let thinking = self.thinking.load(Ordering::SeqCst);
        thinking > 0 && thinking >= self.open.load(Ordering::SeqCst)
    }

    /// `n` bytes counted as unsent are gone: written, or never to be.
    fn unowe(&self, n: u64) {
        // Called on every socket write: a read first spares the common case a
        // read-modify-write.
        if n > 0
            && self.unsent.load(Ordering::Relaxed) > 0
            && let Ok(was) = self
                .unsent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                    Some(u.saturating_sub(n))
                })
            && let Some(p) = &self.parent
        {
            p.unsent.fetch_sub(was.min(n), Ordering::Relaxed);
        }
    }

    /// `n` bytes an answer keeps before hyper takes them count as unsent.
    fn hold(&self, n: u64) {
        // Held first: `streams_ended` never drops below what is held, so it keeps these.
        self.held.fetch_add(n, Ordering::Relaxed);
        self.owe(n);
    }

    /// `n` bytes held are gone without hyper taking them.
    fn release(&self, n: u64) {
        self.unowe(n);
        self.handed(n);
    }

    /// Hyper has taken `n` bytes held: still unsent, no longer held.
    fn handed(&self, n: u64) {
        if n > 0 {
            let _ = self
                .held
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                    Some(h.saturating_sub(n))
                });
        }
    }

    /// Every HTTP/2 stream has ended (`streams`): nothing hyper took is still to be written,
    /// so what was counted for streams the client reset, which h2 dropped, is gone. What
    /// answers still hold (a reset stream's body not dropped yet) stays until released.
    fn streams_ended(&self) {
        self.forget(u64::MAX);
    }

    /// Up to `n` bytes hyper took are gone unwritten (h2 dropped them with their stream),
    /// never counting below what answers hold.
    fn forget(&self, n: u64) {
        let mut u = self.unsent.load(Ordering::Acquire);
        loop {
            // Read after `unsent`, and again on each retry: a `hold` (held first, then
            // unsent) between the two reads is then counted twice rather than lost.
            let held = self.held.load(Ordering::Relaxed);
            if u <= held {
                return;
            }
            let gone = (u - held).min(n);
            match self.unsent.compare_exchange_weak(
                u,
                u - gone,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if let Some(p) = &self.parent {
                        p.unsent.fetch_sub(gone, Ordering::Relaxed);
                    }
                    return;
                }
                Err(now) => u = now,
            }
        }
    }

    /// A whole answer of `n` bytes is on its way out.
    fn owe(&self, n: u64) {
        if n > 0 {
            // The parent first: a write that takes the bytes off this connection finds them
            // in the parent already, so the total never runs below zero.
            if let Some(p) = &self.parent {
                p.unsent.fetch_add(n, Ordering::Relaxed);
            }
            // Release: `streams_ended`, seeing these bytes, sees what `hold` held before.
            self.unsent.fetch_add(n, Ordering::Release);
        }
    }

    fn quiet_for(&self) -> Duration {
        let now = self.now();
        Duration::from_millis(now.saturating_sub(self.stirred.load(Ordering::Relaxed)))
    }

    /// How long since a request last started or ended.
    fn unasked_for(&self) -> Duration {
        let now = self.now();
        Duration::from_millis(now.saturating_sub(self.asked.load(Ordering::Relaxed)))
    }

    /// Resolves once no request has been open, none started and nothing been written in
    /// earnest or waited to be for `settle`: long enough for a request a client sent before
    /// it saw the server's GOAWAY to arrive, and never while an answer is still going out.
    pub async fn settled(&self, settle: Duration) {
        loop {
            let none_open = self.none_open.notified();
            tokio::pin!(none_open);
            // Registered before the count is read, so the last guard's drop is not missed.
            none_open.as_mut().enable();
            let started = self.started.load(Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(settle).await;
                if !self.owes()
                    && self.started.load(Ordering::SeqCst) == started
                    && self.quiet_for() >= settle
                {
                    return;
                }
            } else {
                none_open.await;
            }
        }
    }
}

impl InFlight {
    /// Resolves once this connection is told to make room (see `evict_a_stranger`).
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Its client sent control frames past its budget: the connection is told to close.
    fn hush(&self) {
        if !self.hushed.swap(true, Ordering::SeqCst) {
            self.hush.notify_one();
        }
    }

    /// Whether it was ever told to close for its control frames.
    pub fn hushed(&self) -> bool {
        self.hushed.load(Ordering::SeqCst)
    }

    /// The client has sent its first bytes.
    pub fn spoke(&self) {
        self.spoke.store(true, Ordering::SeqCst);
    }

    /// A parent's connections still open, oldest first. Upgraded outside the lock: the last
    /// reference to a connection may go with the upgrade, and its drop takes the lock.
    fn connections(&self) -> impl Iterator<Item = Arc<InFlight>> {
        let children: Vec<Weak<InFlight>> = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        children.into_iter().filter_map(|c| c.upgrade())
    }

    /// Tell the oldest connection that never carried a valid token (or is past its tenant's
    /// share of safe connections), and either has said nothing for `SILENT_GRACE` or has
    /// been open for `STRANGER_GRACE`, to close, so that a newcomer gets its slot; `false`
    /// when there is none. A younger one that has spoken is most likely a client in its
    /// handshake or first request: closing it sent it to close another in turn as it
    /// reconnected, a storm under more clients than slots. One that has said nothing after
    /// `SILENT_GRACE` is closed: holding slots with silent connections, however fast they
    /// come back, must not keep an IdP out.
    pub fn evict_a_stranger(&self) -> bool {
        let now = self.now();
        let grace = STRANGER_GRACE.as_millis() as u64;
        let silent_grace = SILENT_GRACE.as_millis() as u64;
        for c in self.connections() {
            let age = now.saturating_sub(c.born);
            let closable = age >= grace || (age >= silent_grace && !c.spoke.load(Ordering::SeqCst));
            if closable
                && !c.vouched.load(Ordering::SeqCst)
                && !c.evicted.swap(true, Ordering::SeqCst)
            {
                // A stored permit: the connection sees it even if it is not waiting yet.
                c.evict.notify_one();
                return true;
            }
        }
        false
    }
}

impl crate::http::vouch::Vouch for InFlight {
    /// Vouched for by `tenant`'s token, unless that tenant already has its parent's cap of
    /// vouched connections: then it stays a stranger, closed when a newcomer needs its slot.
    fn vouch(&self, tenant: &str, token: &str) {
        if self.vouched.load(Ordering::Relaxed) {
            return;
        }
        // Its answers count as its token's, whether or not it is made safe.
        if self.reader.get().is_none() {
            let _ = self.reader.set((tenant.to_string(), token.to_string()));
        }
        let mut mine = self.vouched_for.lock().unwrap_or_else(|e| e.into_inner());
        if mine.is_some() {
            return;
        }
        if let Some(p) = &self.parent {
            let mut by = p.vouched_by.lock().unwrap_or_else(|e| e.into_inner());
            let cap = p.vouch_cap.load(Ordering::Relaxed);
            // Looked up before inserting: a connection past the cap asks on every request.
            if cap > 0 && by.get(tenant).is_some_and(|n| *n >= cap) {
                return;
            }
            *by.entry(tenant.to_string()).or_insert(0) += 1;
        }
        *mine = Some(tenant.to_string());
        self.vouched.store(true, Ordering::SeqCst);
    }

    fn disown(&self) {
        let mut mine = self.vouched_for.lock().unwrap_or_else(|e| e.into_inner());
        self.vouched.store(false, Ordering::SeqCst);
        if let (Some(t), Some(p)) = (mine.take(), &self.parent) {
            p.unvouch(&t);
        }
    }
}

impl InFlight {
    /// One fewer connection is safe on `tenant`'s tokens.
    fn unvouch(&self, tenant: &str) {
        let mut by = self.vouched_by.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by.remove(tenant);
            }
        }
    }
}

/// A connection gone with answers unsent no longer holds them, nor its place among the
/// parent's connections.
impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(p) = &self.parent {
            p.unsent
                .fetch_sub(*self.unsent.get_mut(), Ordering::Relaxed);
            let tenant = self
                .vouched_for
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(t) = tenant {
                p.unvouch(&t);
            }
            p.children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.serial);
        }
    }
}

pub struct Guard {
    flight: Arc<InFlight>,
    /// Its answer is not ready yet.
    thinking: bool,
}

impl Guard {
    /// The request's answer is ready (its handler has returned): from now on a quiet
    /// connection is one whose client takes nothing. Progress, too: what comes next (the
    /// rest of a body drained, the answer written) has its own time from here.
    pub fn answered(&mut self) {
        if std::mem::take(&mut self.thinking) {
            self.flight.thinking.fetch_sub(1, Ordering::SeqCst);
            self.flight.stir();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.answered();
        self.flight.ask();
        for f in self.flight.lineage() {
            if f.open.fetch_sub(1, Ordering::SeqCst) == 1 {
                f.none_open.notify_waiters();
            }
        }
    }
}

/// A response body that keeps its request counted until hyper has taken all of it (a
/// streamed group is still being answered after the handler returned).
pub struct Counted<B> {
    body: B,
    guard: Guard,
    /// Bytes held as unsent when the answer came, and how many hyper has taken since.
    owed: u64,
    taken: u64,
    /// Of unknown size (a stream): each part is counted as unsent when hyper takes it.
    streamed: bool,
    /// The size of the last part hyper took, and whether it has taken the end.
    last: u64,
    ended: bool,
}

impl<B: Body> Counted<B> {
    /// Counts a body of known size as unsent until its bytes are written, and a stream's
    /// parts once hyper has them (an HTTP/2 stream's window lets it take a megabyte its
    /// client has not read).
    pub fn new(body: B, guard: Guard) -> Self {
        let size = body.size_hint().exact();
        let owed = size.unwrap_or(0);
        guard.flight.hold(owed);
        Counted {
            body,
            guard,
            owed,
            taken: 0,
            streamed: size.is_none(),
            last: 0,
            ended: false,
        }
    }
}

/// What hyper never took (the client reset the stream, or went) will never be written.
/// Nor, most likely, will the last part it took when it lets go of a body before its end:
/// hyper takes a part only once the stream has room to send it, so what h2 held for the
/// stream, and dropped with it, is about a part. Forgotten rather than left counted for
/// the rest of the connection, but never below what other answers hold: a client
/// cancelling streams cannot hide an answer it leaves unread.
impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        let flight = &self.guard.flight;
        flight.release(self.owed.saturating_sub(self.taken));
        if !self.ended {
            flight.forget(self.last);
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B>
where
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let n = match &polled {
            Poll::Ready(None) => {
                self.ended = true;
                None
            }
            Poll::Ready(Some(Ok(f))) => f.data_ref().map(|d| bytes::Buf::remaining(d) as u64),
            _ => None,
        };
        if let Some(n) = n {
            if self.streamed {
                self.guard.flight.owe(n);
                self.owed += n;
            } else {
                self.guard
                    .flight
                    .handed(n.min(self.owed.saturating_sub(self.taken)));
            }
            self.taken += n;
            self.last = n;
            // A whole body says it is at its end once its last part is taken.
            self.ended = self.body.is_end_stream();
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

impl crate::http::backlog::Unsent for InFlight {
    fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Summed over the parent's connections when asked, rather than kept as a running
    /// count beside each connection's: asked only while the server is over its bound, and a
    /// sum has no race with the writes that take bytes off.
    fn unsent_of_reader(&self) -> u64 {
        let (Some(mine), Some(p)) = (self.reader.get(), &self.parent) else {
            return self.unsent();
        };
        p.connections()
            .filter(|c| c.reader.get() == Some(mine))
            .map(|c| c.unsent.load(Ordering::Relaxed))
            .sum()
    }

    fn unsent_everywhere(&self) -> u64 {
        self.lineage()
            .last()
            .map_or(0, |root| root.unsent.load(Ordering::Relaxed))
    }

    fn hold(&self, n: u64) {
        InFlight::hold(self, n);
    }

    fn release(&self, n: u64) {
        InFlight::release(self, n);
    }
}

/// A connection's socket, counting what goes out as progress, and reading HTTP/2 frame
/// heads both ways: for the client's control frames (`chatter`) and for when no stream is
/// left open (`streams`).
pub struct Watched<IO> {
    io: IO,
    flight: Arc<InFlight>,
    framing: Framing,
    chatter: Chatter,
    streams: Streams,
    cut: bool,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, flight: Arc<InFlight>) -> Self {
        Watched {
            io,
            flight,
            framing: Framing::default(),
            chatter: Chatter::new(Instant::now()),
            streams: Streams::default(),
            cut: false,
        }
    }

    /// A write's outcome counted; `Some(n)` when `n` bytes were written.
    fn note_write(&mut self, polled: &Poll<io::Result<usize>>) -> Option<usize> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.flight.blocked(false);
                self.flight.wrote(*n);
                Some(*n)
            }
            Poll::Pending => {
                self.flight.blocked(true);
                None
            }
            Poll::Ready(Err(_)) => None,
        }
    }

    /// Frame heads in bytes the client sent; what its control frames amount to.
    fn walk_read(&mut self, bytes: &[u8]) -> Verdict {
        let (chatter, streams) = (&mut self.chatter, &mut self.streams);
        let mut ended = false;
        self.framing.read(bytes, |h| {
            chatter.heard(&h);
            ended |= streams.heard(&h);
        });
        if ended {
            self.flight.streams_ended();
        }
        self.chatter.verdict(Instant::now)
    }

    /// Frame heads in bytes the server wrote.
    fn walk_written(&mut self, bytes: &[u8]) {
        let (chatter, streams) = (&mut self.chatter, &mut self.streams);
        let mut ended = false;
        self.framing.wrote(bytes, |h| {
            chatter.sent(&h);
            ended |= streams.sent(&h);
        });
        if ended {
            self.flight.streams_ended();
        }
    }
}

impl<IO> Drop for Watched<IO> {
    fn drop(&mut self) {
        self.flight.blocked(false);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(Err(chatter_cut()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_ready() {
            match this.walk_read(&buf.filled()[before..]) {
                Verdict::Fine => {}
                Verdict::TooMuch => this.flight.hush(),
                Verdict::Cut => {
                    this.cut = true;
                    return Poll::Ready(Err(chatter_cut()));
                }
            }
        }
        polled
    }
}

fn chatter_cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 control frames far past the connection's budget",
    )
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Some(n) = self.note_write(&polled) {
            self.walk_written(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Some(mut n) = self.note_write(&polled) {
            for b in bufs {
                let part = &b[..n.min(b.len())];
                self.walk_written(part);
                n -= part.len();
                if n == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        match polled {
            Poll::Pending => self.flight.blocked(true),
            Poll::Ready(Ok(())) => self.flight.blocked(false),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// When a connection is closed for want of progress.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// Nothing open or owed, and no request started or ended for this long: closed,
    /// politely (GOAWAY, or at once for HTTP/1.1). Writes do not count, as PING
    /// acknowledgements are writes too.
    pub idle: Duration,
    /// Requests open but nothing written for this long, though the socket would take it:
    /// the client gives no flow-control window (HTTP/2), and the connection is dropped with
    /// what it holds. A client that reads slowly, or pauses, fills the socket instead; the
    /// kernel then lets the server write again only when much of it has drained, minutes
    /// apart for a slow reader, so a full socket is never taken for a stall.
    pub stalled: Duration,
    /// The socket full and nothing taken from it for this long: the client has stopped
    /// reading altogether, and the connection is dropped. Far longer than the gaps a slow
    /// reader leaves.
    pub unread: Duration,
}

/// How long a connection told to close may stay quiet before it is dropped: a client that
/// never acknowledges the GOAWAY's PING, or stops reading what is left to send.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// Serve one connection until it ends, is idle or stalled past `limits`, or the stop is over
/// (`closed`); from `stopping` on, it finishes its open requests and takes no new ones.
/// Returns how it ended, for the caller to say (once a minute per address: any client can
/// end its connections so).
pub async fn drive<C>(
    conn: C,
    flight: Arc<InFlight>,
    limits: Timeouts,
    peer: std::net::SocketAddr,
    mut stopping: watch::Receiver<bool>,
    mut closed: watch::Receiver<bool>,
) -> Ending
where
    C: GracefulConnection,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ending = serve_until_over(conn, &flight, limits, peer, &mut stopping, &mut closed).await;
    if flight.hushed() {
        Ending::Hushed
    } else {
        ending
    }
}

async fn serve_until_over<C>(
    conn: C,
    flight: &InFlight,
    limits: Timeouts,
    peer: std::net::SocketAddr,
    stopping: &mut watch::Receiver<bool>,
    closed: &mut watch::Receiver<bool>,
) -> Ending
where
    C: GracefulConnection,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let mut winding_down = false;
    // When the close began.
    let mut wound: Option<Instant> = None;
    // When it was told to make room, if it carried a token (see `EVICTED_GRACE`).
    let mut evicted_at: Option<Instant> = None;
    // Each tick also polls `conn`: hyper's HTTP/1 header timeout (`HeaderTimer`) is only
    // noticed when it is polled.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                let Err(e) = r else { return Ending::Done };
                let e = e.into();
                if unreadable(&*e) {
                    return Ending::Unreadable(e.to_string());
                }
                if calmed(&*e) {
                    return Ending::Calmed;
                }
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                return Ending::Done;
            }
            _ = closed.wait_for(|c| *c) => return Ending::Done,
            _ = flight.evicted() => {
                // A connection past its tenant's share carried a token: a request of it may
                // be a write already on its way to the database, whose answer the client
                // should get. It is told to close (GOAWAY, or close after the answer) and
                // given a moment; one that showed no token goes at once.
                if flight.reader.get().is_none() {
                    tracing::debug!(%peer, "closing a connection that has shown no valid token: every connection slot is taken and a client is waiting");
                    return Ending::Done;
                }
                tracing::debug!(%peer, "closing a connection past its tenant's share of the connection slots: every slot is taken and a client is waiting");
                conn.as_mut().graceful_shutdown();
                winding_down = true;
                wound = Some(Instant::now());
                evicted_at = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(evicted_at.unwrap_or_else(Instant::now) + EVICTED_GRACE), if evicted_at.is_some() => {
                return Ending::Done;
            }
            // Sent GOAWAY with its open requests answered; if the frames go on, `Watched`
            // cuts the connection.
            _ = flight.hush.notified(), if !winding_down => {
                conn.as_mut().graceful_shutdown();
                winding_down = true;
                wound = Some(Instant::now());
            }
            _ = stopping.wait_for(|s| *s), if !winding_down => {
                conn.as_mut().graceful_shutdown();
                winding_down = true;
                wound = Some(Instant::now());
            }
            _ = tick.tick() => {
                let owes = flight.owes();
                let quiet = flight.quiet_for();
                let socket_full = flight.blocked.load(Ordering::SeqCst) > 0;
                // Requests still being answered (queued behind the tenant's scans, say)
                // owe the client nothing yet: their handlers' own limits answer them (408,
                // 503, 400 tooMany), and this only bounds a handler past those.
                if owes && !socket_full && flight.all_thinking() {
                    if quiet >= limits.unread {
                        return Ending::Unanswered(quiet);
                    }
                } else if owes && !socket_full && quiet >= limits.stalled {
                    return Ending::NoWindow(quiet);
                }
                if socket_full && quiet >= limits.unread {
                    return Ending::Unread(quiet);
                }
                // Idle is counted from the last request and from the close, not from the last
                // write: a client that sends PINGs fast enough would otherwise keep a
                // connection with no stream (and no token) open with their acknowledgements.
                // An answer still going out is owed while its client reads (the socket fills
                // between reads), so it is not cut.
                let unasked = wound.map_or(flight.unasked_for(), |w| {
                    flight.unasked_for().min(w.elapsed())
                });
                if !owes && winding_down && unasked >= limits.idle.min(WIND_DOWN) {
                    return Ending::Done;
                }
                if !owes && !winding_down && unasked >= limits.idle {
                    conn.as_mut().graceful_shutdown();
                    winding_down = true;
                    // The close itself is given its time.
                    wound = Some(Instant::now());
                }
            }
        }
    }
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ending {
    /// Closed by either side, or cut by the server for a reason it has said already.
    Done,
    /// On a request hyper could not read, in its words: hyper answered it itself (a bare
    /// 400, or 431 for a head too large), and no handler logged it.
    Unreadable(String),
    /// Cut after its answers had not moved for this long: the client (HTTP/2) gave no
    /// flow-control window.
    NoWindow(Duration),
    /// Cut after its requests had been worked on this long without an answer.
    Unanswered(Duration),
    /// Cut after its client had read nothing of its answer for this long.
    Unread(Duration),
    /// Told to close (and cut if it went on) for sending HTTP/2 control frames past its
    /// budget (`chatter`).
    Hushed,
    /// Sent GOAWAY `ENHANCE_YOUR_CALM` by h2: streams reset faster than allowed.
    Calmed,
}

/// Whether a connection ended with h2 sending its client GOAWAY `ENHANCE_YOUR_CALM`
/// (rapid reset, or too many streams the server had to reset).
fn calmed(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<h2::Error>().is_some_and(|h| {
            h.is_go_away() && h.is_library() && h.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
        })
    })
}

/// Whether a connection's error is hyper refusing to parse a request (its head), somewhere
/// in the chain of causes.
fn unreadable(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse() || h.is_parse_too_large())
    })
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
    async fn an_answer_still_going_out_keeps_it_unsettled_and_chatter_does_not() {
        let all = InFlight::new();
        let f = all.child();
        drop(f.start());
        let waiter = tokio::spawn({
            let all = all.clone();
            async move { all.settled(Duration::from_secs(1)).await }
        });
        // An answer written as the client reads it, 4 KiB every half second.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            f.wrote(4096);
        }
        assert!(!waiter.is_finished());
        // An answer the client is not reading yet: owed, however long nothing moves.
        f.blocked(true);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        f.wrote(4096);
        f.blocked(false);
        // PING acknowledgements are no answer.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            f.wrote(17);
        }
        assert!(waiter.is_finished());
    }

    /// Idle is counted from the last request or answer byte, never from other writes (PING
    /// acknowledgements).
    #[tokio::test(start_paused = true)]
    async fn only_requests_and_answers_keep_a_connection_in_use() {
        let f = InFlight::new().child();
        drop(f.start());
        tokio::time::sleep(Duration::from_secs(5)).await;
        for _ in 0..100 {
            f.wrote(4096);
        }
        assert!(f.unasked_for() >= Duration::from_secs(5));
        assert!(f.quiet_for() < Duration::from_secs(1));
        // An answer going out after its request ended.
        f.owe(10_000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        f.wrote(4096);
        assert!(f.unasked_for() < Duration::from_secs(1));
        f.wrote(8000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        f.wrote(4096);
        assert!(f.unasked_for() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn one_tenant_has_at_most_its_share_of_connections_safe_from_closing() {
        use crate::http::vouch::Vouch;
        let all = InFlight::new();
        all.cap_vouched_per_tenant(2);
        let conns: Vec<_> = (0..4).map(|_| all.child()).collect();
        for c in &conns {
            c.spoke();
            c.vouch("acme", "okta");
        }
        let vouched = |cs: &[Arc<InFlight>]| {
            cs.iter()
                .filter(|c| c.vouched.load(Ordering::SeqCst))
                .count()
        };
        // Two of acme's are safe; the others are strangers, closed for a newcomer.
        assert_eq!(vouched(&conns), 2);
        // Another tenant's are not counted against acme's.
        let other = all.child();
        other.vouch("globex", "entra");
        assert!(other.vouched.load(Ordering::SeqCst));
        tokio::time::advance(STRANGER_GRACE + Duration::from_millis(50)).await;
        assert!(all.evict_a_stranger());
        assert!(conns[2].evicted.load(Ordering::SeqCst));
        // One of acme's safe ones gone: the next that shows acme's token is safe again.
        let mut conns = conns;
        conns.remove(0);
        conns[2].vouch("acme", "okta");
        assert!(conns[2].vouched.load(Ordering::SeqCst));
    }

    /// A connection whose token is refused (revoked by a reload, say) is a stranger again:
    /// closed for a newcomer, and no longer counted in its tenant's share.
    #[tokio::test(start_paused = true)]
    async fn a_connection_refused_for_its_token_is_a_stranger_again() {
        use crate::http::vouch::Vouch;
        let all = InFlight::new();
        all.cap_vouched_per_tenant(2);
        let conns: Vec<_> = (0..3).map(|_| all.child()).collect();
        for c in &conns {
            c.spoke();
            c.vouch("acme", "okta");
        }
        assert!(!conns[2].vouched.load(Ordering::SeqCst), "past the share");
        conns[0].disown();
        assert!(!conns[0].vouched.load(Ordering::SeqCst));
        // Its place in acme's share is free for another of acme's connections.
        conns[2].vouch("acme", "okta");
        assert!(conns[2].vouched.load(Ordering::SeqCst));
        tokio::time::advance(STRANGER_GRACE + Duration::from_millis(50)).await;
        assert!(all.evict_a_stranger());
        assert!(conns[0].evicted.load(Ordering::SeqCst));
        assert!(!all.evict_a_stranger(), "the other two are safe");
        // Refused again, it gives back no place it no longer holds.
        conns[0].disown();
        assert_eq!(all.vouched_by.lock().unwrap().get("acme"), Some(&2));
        conns[1].disown();
        assert_eq!(all.vouched_by.lock().unwrap().get("acme"), Some(&1));
    }

    #[test]
    fn unsent_bytes_count_for_the_token_the_connection_carried() {
        use crate::http::backlog::Unsent;
        use crate::http::vouch::Vouch;
        let root = InFlight::new();
        root.cap_vouched_per_tenant(1);
        let (a, b, c, d) = (root.child(), root.child(), root.child(), root.child());
        let e = root.child();
        // Owed before any token: the token's once it comes.
        a.owe(5);
        a.vouch("acme", "app");
        // Past acme's cap of safe connections, b's bytes still count as acme's app's.
        b.vouch("acme", "app");
        c.vouch("globex", "app");
        // Acme's IdP, with its own token, is not held back by what its app leaves unread.
        e.vouch("acme", "okta");
        a.owe(1000);
        b.owe(200);
        c.owe(50);
        d.owe(10);
        e.owe(7);
        assert_eq!(a.unsent_of_reader(), 1205);
        assert_eq!(b.unsent_of_reader(), 1205);
        assert_eq!(c.unsent_of_reader(), 50);
        assert_eq!(d.unsent_of_reader(), 10);
        assert_eq!(e.unsent_of_reader(), 7);
        a.wrote(305);
        assert_eq!(b.unsent_of_reader(), 900);
        drop(b);
        assert_eq!(a.unsent_of_reader(), 700);
        a.wrote(5000);
        assert_eq!((a.unsent_of_reader(), root.unsent()), (0, 67));
    }

    #[tokio::test]
    async fn unsent_bytes_count_everywhere_until_written_or_the_connection_goes() {
        use crate::http::backlog::Unsent;
        let root = InFlight::new();
        let (a, b) = (root.child(), root.child());
        a.owe(1000);
        b.owe(200);
        assert_eq!((a.unsent(), a.unsent_everywhere()), (1000, 1200));
        a.wrote(300);
        assert_eq!((a.unsent(), root.unsent()), (700, 900));
        // Headers and TLS records go out too: never below zero, here or in the parent.
        a.wrote(5000);
        assert_eq!((a.unsent(), root.unsent()), (0, 200));
        b.owe(50);
        drop(b);
        assert_eq!(root.unsent(), 0);
    }

    /// Once no stream is open, what hyper took and never wrote is gone; what answers still
    /// hold, not taken yet, stays until they let it go.
    #[tokio::test]
    async fn streams_ended_drops_what_hyper_took_and_keeps_what_is_held() {
        use crate::http::backlog::Unsent;
        let root = InFlight::new();
        let (a, b) = (root.child(), root.child());
        // A body of 1,000 bytes not taken yet, a stream's 300 taken, another connection's.
        a.hold(1000);
        a.owe(300);
        b.owe(50);
        a.streams_ended();
        assert_eq!((a.unsent(), root.unsent()), (1000, 1050));
        // Hyper takes 600 of the body, writes 100, and the stream is reset.
        a.handed(600);
        a.wrote(100);
        assert_eq!(a.unsent(), 900);
        a.streams_ended();
        assert_eq!((a.unsent(), root.unsent()), (400, 450));
        // The reset body is dropped with its 400 untaken; nothing more to drop after.
        a.release(400);
        a.streams_ended();
        assert_eq!((a.unsent(), root.unsent()), (0, 50));
    }

    /// A body hyper lets go of before its end (its stream reset) takes with it what it never
    /// handed over, and the last part hyper took (h2 dropped it unwritten), but never what
    /// other answers hold; one taken to its end leaves its unwritten bytes counted.
    #[tokio::test]
    async fn a_body_let_go_before_its_end_forgets_its_last_part() {
        use crate::http::backlog::Unsent;
        use crate::http::response::{Body as Answer, PART};
        use http_body_util::BodyExt;
        let part = PART as u64;
        let flight = InFlight::new().child();
        // Another answer's 10 bytes, not taken yet.
        flight.hold(10);
        // A whole body of three parts: hyper takes two, writes one, and lets go.
        let mut whole = Counted::new(Answer::full(vec![1u8; 2 * PART + 5]), flight.start());
        assert_eq!(flight.unsent(), 10 + 2 * part + 5);
        for _ in 0..2 {
            whole.frame().await.unwrap().unwrap();
        }
        flight.wrote(PART);
        drop(whole);
        assert_eq!(flight.unsent(), 10);
        // A stream: hyper takes 3 parts of a chunk, writes none, and lets go. The part
        // before the last stays counted (a connection-wide count cannot tell it was dropped).
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(bytes::Bytes::from(vec![2u8; 4 * PART]))
            .await
            .unwrap();
        let mut stream = Counted::new(Answer::stream(rx), flight.start());
        for _ in 0..3 {
            stream.frame().await.unwrap().unwrap();
        }
        assert_eq!(flight.unsent(), 10 + 3 * part);
        drop(stream);
        assert_eq!(flight.unsent(), 10 + 2 * part);
        // Never below what is held: the last part taken was written already.
        flight.wrote(2 * PART);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(bytes::Bytes::from(vec![3u8; 100])).await.unwrap();
        let mut stream = Counted::new(Answer::stream(rx), flight.start());
        stream.frame().await.unwrap().unwrap();
        flight.wrote(100);
        drop(stream);
        assert_eq!(flight.unsent(), 10);
        // Taken to its end: what is not written yet stays counted.
        let mut whole = Counted::new(Answer::full(vec![4u8; 50]), flight.start());
        whole.frame().await.unwrap().unwrap();
        drop(whole);
        assert_eq!(flight.unsent(), 60);
        drop(tx);
    }
    /// A request still being answered is not its client's stall; once answered, a quiet
    /// connection is.
    #[test]
    fn requests_being_answered_owe_the_client_nothing_yet() {
        let f = InFlight::new().child();
        assert!(!f.all_thinking());
        let mut a = f.start();
        let b = f.start();
        assert!(f.all_thinking());
        a.answered();
        assert!(
            !f.all_thinking(),
            "an answer handed over waits on the client"
        );
        drop(a);
        assert!(f.all_thinking());
        drop(b);
        assert!(!f.all_thinking() && !f.owes());
    }

    /// hyper's header timeout runs on `HeaderTimer`, whose deadlines nothing wakes: the tick
    /// here must poll the connection, or a head begun and never finished would hold the
    /// connection for as long as the idle rule allows (here, an hour).
    #[tokio::test(start_paused = true)]
    async fn a_head_never_finished_ends_the_connection_within_a_tick_of_the_header_timeout() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(4096);
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(super::super::header_timer::HeaderTimer)
            .header_read_timeout(Duration::from_secs(3))
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        client
            .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        let hour = Duration::from_secs(3600);
        let limits = Timeouts {
            idle: hour,
            stalled: hour,
            unread: hour,
        };
        let (_stop, stopping) = watch::channel(false);
        let (_close, closed) = watch::channel(false);
        let peer = "127.0.0.1:1".parse().unwrap();
        let started = Instant::now();
        let ended = tokio::time::timeout(
            Duration::from_secs(60),
            drive(
                conn,
                InFlight::new().child(),
                limits,
                peer,
                stopping,
                closed,
            ),
        )
        .await;
        assert!(ended.is_ok(), "the unfinished head held the connection");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took <= Duration::from_secs(4),
            "ended after {took:?}"
        );
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

    // Paused time, here and in the two share tests: a loaded machine's stall between two
    // lines must not age a connection past a grace period.
    #[tokio::test(start_paused = true)]
    async fn the_oldest_stranger_is_evicted_and_a_vouched_connection_never() {
        use crate::http::vouch::Vouch;
        let all = InFlight::new();
        let gone = all.child();
        let ours = all.child();
        let old = all.child();
        let new = all.child();
        drop(gone);
        ours.vouch("t", "idp");
        for c in [&ours, &old, &new] {
            c.spoke();
        }
        // Strangers that have spoken are safe for their first second.
        assert!(
            !all.evict_a_stranger(),
            "a stranger just connected was evicted"
        );
        // One that has said nothing is not, once a client would have spoken.
        let silent = all.child();
        assert!(!all.evict_a_stranger(), "a connection just accepted");
        tokio::time::advance(SILENT_GRACE + Duration::from_millis(50)).await;
        assert!(all.evict_a_stranger());
        assert!(silent.evicted.load(Ordering::SeqCst));
        tokio::time::advance(STRANGER_GRACE + Duration::from_millis(50)).await;
        let young = all.child();
        young.spoke();
        assert!(all.evict_a_stranger());
        assert!(old.evicted.load(Ordering::SeqCst));
        assert!(!new.evicted.load(Ordering::SeqCst));
        // `old` is already on its way out: the next one is `new`.
        assert!(all.evict_a_stranger());
        assert!(new.evicted.load(Ordering::SeqCst));
        assert!(
            !all.evict_a_stranger(),
            "a vouched or young connection was evicted"
        );
        assert!(!ours.evicted.load(Ordering::SeqCst));
        assert!(!young.evicted.load(Ordering::SeqCst));
        drop((old, new, young, silent));
        assert_eq!(
            all.children.lock().unwrap().len(),
            1,
            "gone connections stay listed"
        );
    }
}
