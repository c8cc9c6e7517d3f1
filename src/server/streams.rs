//! Which of an HTTP/2 connection's streams may still have answer bytes to send, read from
//! the frame heads both ways (`frames`).
//!
//! Bytes of an answer hyper has taken count as unsent until written. When the client resets
//! the stream, h2 drops what it still held for it, unwritten, and nothing says how much that
//! was: a client cancelling streamed groups part-way, again and again on one connection,
//! left tens of kilobytes counted each time, until its pages waited for room it never used.
//! Once no stream is left that could send anything, nothing taken is still to be written,
//! and the count can drop what it holds for them.

use super::frames::{DATA, END_STREAM, HEADERS, Head, RST_STREAM};

/// More than the streams the server lets a client open at once (100), with room for those
/// opened past it and not yet refused.
const MOST: usize = 256;

/// One connection's open streams.
#[derive(Default)]
pub struct Streams {
    /// Opened by the client's HEADERS, and not yet ended by the server's END_STREAM or by
    /// either side's RST_STREAM.
    open: Vec<u32>,
    /// The highest stream the client opened: HEADERS on a lower one are trailers.
    highest: u32,
    /// More were open than `MOST`: which ones is no longer known, so none is said to be
    /// the last.
    lost: bool,
}

impl Streams {
    /// A frame the client sent; whether it ended the last open stream.
    pub fn heard(&mut self, h: &Head) -> bool {
        match h.kind {
            HEADERS if h.stream > self.highest => {
                self.highest = h.stream;
                if self.open.len() < MOST {
                    self.open.push(h.stream);
                } else {
                    self.lost = true;
                }
                false
            }
            RST_STREAM => self.end(h.stream),
            _ => false,
        }
    }

    /// A frame the server wrote; whether it ended the last open stream.
    pub fn sent(&mut self, h: &Head) -> bool {
        match h.kind {
            DATA | HEADERS if h.flags & END_STREAM != 0 => self.end(h.stream),
            RST_STREAM => self.end(h.stream),
            _ => false,
        }
    }

    fn end(&mut self, stream: u32) -> bool {
        let Some(i) = self.open.iter().position(|s| *s == stream) else {
            return false;
        };
        self.open.swap_remove(i);
        self.open.is_empty() && !self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::frames::{CONTINUATION, PING};

    fn head(kind: u8, flags: u8, stream: u32) -> Head {
        Head {
            kind,
            flags,
            stream,
        }
    }

    #[test]
    fn the_last_stream_ended_either_way_is_told_once() {
        let mut s = Streams::default();
        assert!(!s.heard(&head(HEADERS, 0x4 | END_STREAM, 1)));
        assert!(!s.heard(&head(HEADERS, 0x4, 3)));
        assert!(!s.heard(&head(CONTINUATION, 0x4, 3)));
        // The server's headers and body, the last DATA ending it.
        assert!(!s.sent(&head(HEADERS, 0x4, 1)));
        assert!(!s.sent(&head(DATA, 0, 1)));
        assert!(!s.sent(&head(DATA, END_STREAM, 1)));
        // The client's RST_STREAM ends the last one.
        assert!(s.heard(&head(RST_STREAM, 0, 3)));
        // Ending it again, or one never opened, tells nothing.
        assert!(!s.sent(&head(RST_STREAM, 0, 3)));
        assert!(!s.heard(&head(RST_STREAM, 0, 9)));
        // An answer of headers alone, and the server's own RST_STREAM.
        assert!(!s.heard(&head(HEADERS, 0x4, 5)));
        assert!(!s.heard(&head(HEADERS, 0x4, 7)));
        assert!(!s.sent(&head(HEADERS, 0x4 | END_STREAM, 5)));
        assert!(s.sent(&head(RST_STREAM, 0, 7)));
    }

    #[test]
    fn trailers_and_other_frames_open_nothing() {
        let mut s = Streams::default();
        assert!(!s.heard(&head(HEADERS, 0x4, 5)));
        // The request's trailers, and a HEADERS on a lower stream.
        assert!(!s.heard(&head(HEADERS, 0x4 | END_STREAM, 5)));
        assert!(!s.heard(&head(HEADERS, 0x4, 3)));
        assert!(!s.heard(&head(PING, 0, 0)));
        assert!(!s.heard(&head(DATA, END_STREAM, 5)));
        // The client's END_STREAM ends its side only.
        assert!(!s.sent(&head(PING, END_STREAM, 5)));
        assert!(s.sent(&head(DATA, END_STREAM, 5)));
    }

    #[test]
    fn past_the_most_open_none_is_the_last() {
        let mut s = Streams::default();
        let ids: Vec<u32> = (0..=MOST as u32).map(|i| 2 * i + 1).collect();
        for id in &ids {
            assert!(!s.heard(&head(HEADERS, 0x4, *id)));
        }
        for id in &ids {
            assert!(!s.sent(&head(RST_STREAM, 0, *id)), "stream {id}");
        }
    }
}
