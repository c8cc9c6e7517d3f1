//! HTTP/2 frames that ask the server for work but for no answer a request would get
//! (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM), counted per connection.
//!
//! A client can send such frames as fast as it can write them, with no token, and each costs
//! the server a frame's work (a PING also its acknowledgement): a few connections doing it
//! kept both cores busy. hyper and h2 bound none of it, and the idle timeout never fires
//! while an occasional request comes. So each connection has a budget of them: it starts
//! full, refills slowly with time, and is paid into by the work the client gives a reason
//! for (a request opened; the acknowledgements that frames the server sends call for).
//! A connection that spends past it is told to close; one that goes on is cut.
//!
//! DATA frames are h2's to bound (a budget of small frames buffered faster than they are
//! read, and a lifetime limit on empty ones): a client streaming a body in small pieces,
//! read as they come, is no flood, and counting its frames here cut such uploads mid-body.
//!
//! The count reads the frame heads both ways (`frames`).

use std::time::Duration;

use tokio::time::Instant;

use super::frames::{ACK, CONTINUATION, DATA, HEADERS, Head, PING, SETTINGS};

/// The budget's size, in frames: the burst a connection may send before its spending counts.
/// A real client sends a few a request, and a PING every few seconds at most.
const ROOM: i64 = 1_000;

/// One frame's worth of budget comes back this often.
const REFILL: Duration = Duration::from_millis(100);

/// Paid in for each request the client opens: the RST_STREAM, PRIORITY and
/// WINDOW_UPDATE frames a stream may bring, several times over.
const PER_REQUEST: i64 = 8;

/// What a connection's reads amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Past its budget: it should be told to close.
    TooMuch,
    /// Past its budget by as much again, having been told: cut it.
    Cut,
}

/// One connection's count.
pub struct Chatter {
    balance: i64,
    /// When the balance was last refilled.
    refilled: Instant,
    /// What the client's frames heard since the last verdict spent and paid in.
    spent: i64,
    paid: i64,
}

impl Chatter {
    pub fn new(now: Instant) -> Chatter {
        Chatter {
            balance: ROOM,
            refilled: now,
            spent: 0,
            paid: 0,
        }
    }

    /// A frame the client sent; counted at the next `verdict`.
    pub fn heard(&mut self, h: &Head) {
        match h.kind {
            HEADERS => self.paid += PER_REQUEST,
            // Bodies, and the rest of the HEADERS a CONTINUATION continues.
            DATA | CONTINUATION => {}
            _ => self.spent += 1,
        }
    }

    /// What the frames heard since the last verdict amount to (`now` is asked only if
    /// there were any that count).
    pub fn verdict(&mut self, now: impl FnOnce() -> Instant) -> Verdict {
        let (spent, paid) = (
            std::mem::take(&mut self.spent),
            std::mem::take(&mut self.paid),
        );
        if spent == 0 && paid == 0 {
            return Verdict::Fine;
        }
        self.refill(now());
        self.balance = (self.balance + paid).min(ROOM) - spent;
        if self.balance < -ROOM {
            Verdict::Cut
        } else if self.balance < 0 {
            Verdict::TooMuch
        } else {
            Verdict::Fine
        }
    }

    /// A frame the server wrote: each DATA frame may earn the client a WINDOW_UPDATE for the
    /// stream and one for the connection, each PING and SETTINGS its acknowledgement.
    pub fn sent(&mut self, h: &Head) {
        let paid = match h.kind {
            DATA => 2,
            PING | SETTINGS if h.flags & ACK == 0 => 1,
            _ => return,
        };
        self.balance = (self.balance + paid).min(ROOM);
    }

    fn refill(&mut self, now: Instant) {
        let steps = now.saturating_duration_since(self.refilled).as_millis() / REFILL.as_millis();
        if steps == 0 {
            return;
        }
        // At most the room comes back, however long it rested.
        self.balance = (self.balance + steps.min(2 * ROOM as u128) as i64).min(ROOM);
        self.refilled += REFILL * u32::try_from(steps).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::server::frames::{Framing, PREFACE, frame_on};

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        frame_on(1, kind, flags, payload_len)
    }

    fn pings(n: usize) -> Vec<u8> {
        (0..n).flat_map(|_| frame(PING, 0, 8)).collect()
    }

    /// A connection's frames counted as `Watched` counts them.
    struct Conn {
        framing: Framing,
        chatter: Chatter,
    }

    impl Conn {
        fn read(&mut self, bytes: &[u8], now: impl FnOnce() -> Instant) -> Verdict {
            let c = &mut self.chatter;
            self.framing.read(bytes, |h| c.heard(&h));
            c.verdict(now)
        }

        fn wrote(&mut self, bytes: &[u8]) {
            let c = &mut self.chatter;
            self.framing.wrote(bytes, |h| c.sent(&h));
        }
    }

    /// A connection past its preface at `t`.
    fn h2(t: Instant) -> Conn {
        let mut c = Conn {
            framing: Framing::default(),
            chatter: Chatter::new(t),
        };
        assert_eq!(c.read(PREFACE, || t), Verdict::Fine);
        c
    }

    #[test]
    fn a_flood_of_pings_is_told_to_close_then_cut() {
        let t = Instant::now();
        let mut c = h2(t);
        assert_eq!(c.read(&pings(ROOM as usize), || t), Verdict::Fine);
        assert_eq!(c.read(&pings(1), || t), Verdict::TooMuch);
        assert_eq!(c.read(&pings(ROOM as usize - 1), || t), Verdict::TooMuch);
        assert_eq!(c.read(&pings(1), || t), Verdict::Cut);
    }

    #[test]
    fn every_kind_of_chatter_counts_and_requests_and_bodies_do_not() {
        let t = Instant::now();
        for kind in [2u8, 3, SETTINGS, PING, 7, 8, 0x20] {
            let mut c = h2(t);
            let flood: Vec<u8> = (0..=ROOM).flat_map(|_| frame(kind, 0, 4)).collect();
            assert_eq!(c.read(&flood, || t), Verdict::TooMuch, "type {kind}");
        }
        // A body streamed in small pieces, and requests with their CONTINUATIONs.
        let mut c = h2(t);
        let tiny: Vec<u8> = (0..10 * ROOM).flat_map(|_| frame(DATA, 0, 20)).collect();
        assert_eq!(c.read(&tiny, || t), Verdict::Fine, "small DATA frames");
        let mut work = Vec::new();
        for _ in 0..=ROOM {
            work.extend(frame(HEADERS, 0x4, 40));
            work.extend(frame(CONTINUATION, 0x4, 10));
        }
        assert_eq!(c.read(&work, || t), Verdict::Fine);
    }

    #[test]
    fn time_and_the_servers_own_frames_pay_for_acknowledgements() {
        let t = Instant::now();
        let mut c = h2(t);
        assert_eq!(c.read(&pings(ROOM as usize), || t), Verdict::Fine);
        // A PING a second, as a keep-alive: the balance does not go down.
        for s in 1..=600u64 {
            let at = t + Duration::from_secs(s);
            assert_eq!(c.read(&pings(1), || at), Verdict::Fine, "second {s}");
        }
        // A download the client acknowledges twice a DATA frame, with no time passing.
        let mut c = h2(t);
        assert_eq!(c.read(&pings(ROOM as usize), || t), Verdict::Fine);
        for _ in 0..10_000 {
            c.wrote(&frame(DATA, 0, 100));
            assert_eq!(c.read(&frame(8, 0, 4).repeat(2), || t), Verdict::Fine);
        }
        // The server's PINGs and SETTINGS pay for their acknowledgements; its ACKs do not.
        let mut c = h2(t);
        assert_eq!(c.read(&pings(ROOM as usize), || t), Verdict::Fine);
        c.wrote(&[frame(PING, 0, 8), frame(SETTINGS, 0, 0)].concat());
        let acks = [frame(PING, ACK, 8), frame(SETTINGS, ACK, 0)].concat();
        assert_eq!(c.read(&acks, || t), Verdict::Fine);
        c.wrote(&[frame(PING, ACK, 8), frame(SETTINGS, ACK, 0)].concat());
        assert_eq!(c.read(&pings(1), || t), Verdict::TooMuch);
    }

    #[test]
    fn the_budget_refills_to_its_room_and_no_further() {
        let t = Instant::now();
        let mut c = h2(t);
        assert_eq!(c.read(&pings(ROOM as usize), || t), Verdict::Fine);
        // Ten a second come back: 50 after five seconds.
        let at = t + Duration::from_secs(5);
        assert_eq!(c.read(&pings(50), || at), Verdict::Fine);
        assert_eq!(c.read(&pings(1), || at), Verdict::TooMuch);
        // A day at rest gives back the room, not a day's worth.
        let mut c = h2(t);
        let later = t + Duration::from_secs(86_400);
        assert_eq!(c.read(&pings(ROOM as usize), || later), Verdict::Fine);
        assert_eq!(c.read(&pings(1), || later), Verdict::TooMuch);
    }
}
