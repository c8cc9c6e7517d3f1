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
//! The count walks the plaintext both ways, frame heads only: the payloads are skipped.

use std::time::Duration;

use tokio::time::Instant;

/// The budget's size, in frames: the burst a connection may send before its spending counts.
/// A real client sends a few a request, and a PING every few seconds at most.
const ROOM: i64 = 1_000;

/// One frame's worth of budget comes back this often.
const REFILL: Duration = Duration::from_millis(100);

/// Paid in for each request the client opens: the RST_STREAM, PRIORITY and
/// WINDOW_UPDATE frames a stream may bring, several times over.
const PER_REQUEST: i64 = 8;

/// The client's preface (RFC 9113 §3.4); a connection that starts otherwise is HTTP/1.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
    /// How much of the preface has been seen; `PREFACE.len()` once it is HTTP/2.
    preface: usize,
    http1: bool,
    inbound: Frames,
    outbound: Frames,
    balance: i64,
    /// When the balance was last refilled.
    refilled: Instant,
}

impl Chatter {
    pub fn new(now: Instant) -> Chatter {
        Chatter {
            preface: 0,
            http1: false,
            inbound: Frames::default(),
            outbound: Frames::default(),
            balance: ROOM,
            refilled: now,
        }
    }

    /// Bytes the client sent (`now` is asked only if they hold frames that count).
    pub fn read(&mut self, mut bytes: &[u8], now: impl FnOnce() -> Instant) -> Verdict {
        if self.http1 {
            return Verdict::Fine;
        }
        if self.preface < PREFACE.len() {
            let n = bytes.len().min(PREFACE.len() - self.preface);
            if bytes[..n] != PREFACE[self.preface..self.preface + n] {
                self.http1 = true;
                return Verdict::Fine;
            }
            self.preface += n;
            bytes = &bytes[n..];
        }
        let (mut spent, mut paid) = (0i64, 0i64);
        self.inbound.walk(bytes, |h| match h.kind {
            HEADERS => paid += PER_REQUEST,
            // Bodies, and the rest of the HEADERS a CONTINUATION continues.
            DATA | CONTINUATION => {}
            _ => spent += 1,
        });
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

    /// Bytes the server wrote: each DATA frame may earn the client a WINDOW_UPDATE for the
    /// stream and one for the connection, each PING and SETTINGS its acknowledgement.
    pub fn wrote(&mut self, bytes: &[u8]) {
        // hyper writes only once it has read the preface whole: before it, or on HTTP/1,
        // there are no frames to walk.
        if self.http1 || self.preface < PREFACE.len() {
            return;
        }
        let mut paid = 0i64;
        self.outbound.walk(bytes, |h| match h.kind {
            DATA => paid += 2,
            PING | SETTINGS if h.flags & ACK == 0 => paid += 1,
            _ => {}
        });
        if paid > 0 {
            self.balance = (self.balance + paid).min(ROOM);
        }
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

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const CONTINUATION: u8 = 9;
/// The ACK flag of SETTINGS and PING.
const ACK: u8 = 0x1;

/// What matters of a frame's head: its type and flags.
struct Head {
    kind: u8,
    flags: u8,
}

/// A position in a stream of frames, which arrives in pieces of any size.
#[derive(Default)]
struct Frames {
    head: [u8; 9],
    /// Bytes of the next head gathered so far.
    have: usize,
    /// Bytes of the current payload still to pass over.
    skip: usize,
}

impl Frames {
    /// Walks `bytes`, calling `each` with each head as it completes.
    fn walk(&mut self, mut bytes: &[u8], mut each: impl FnMut(Head)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = &self.head;
                let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.skip = len;
                each(Head {
                    kind: h[3],
                    flags: h[4],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        let mut f = (payload_len as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags, 0, 0, 0, 1]);
        f.resize(9 + payload_len, 0x5a);
        f
    }

    fn pings(n: usize) -> Vec<u8> {
        (0..n).flat_map(|_| frame(PING, 0, 8)).collect()
    }

    /// A connection past its preface at `t`.
    fn h2(t: Instant) -> Chatter {
        let mut c = Chatter::new(t);
        assert_eq!(c.read(PREFACE, || t), Verdict::Fine);
        c
    }

    #[test]
    fn frames_are_found_however_the_bytes_are_split() {
        let mut stream = frame(HEADERS, 0x4, 30);
        stream.extend(frame(DATA, 0x1, 70_000));
        stream.extend(frame(PING, 0, 8));
        stream.extend(frame(0xfe, 0, 0));
        for piece in [1, 2, 8, 9, 10, 4096] {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(piece) {
                f.walk(chunk, |h| seen.push(h.kind));
            }
            assert_eq!(seen, [HEADERS, DATA, PING, 0xfe], "pieces of {piece}");
        }
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

    #[test]
    fn http1_is_not_counted() {
        let t = Instant::now();
        let mut c = Chatter::new(t);
        // A request line starting like the preface.
        assert_eq!(c.read(b"PRI /x HTTP/1.1\r\n", || t), Verdict::Fine);
        let chatter_shaped = pings(3 * ROOM as usize);
        assert_eq!(c.read(&chatter_shaped, || t), Verdict::Fine);
        c.wrote(&chatter_shaped);
        // The preface split across reads is still the preface.
        let mut c = Chatter::new(t);
        for b in PREFACE {
            assert_eq!(c.read(&[*b], || t), Verdict::Fine);
        }
        assert_eq!(c.read(&pings(ROOM as usize + 1), || t), Verdict::TooMuch);
    }
}
