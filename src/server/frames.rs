//! The HTTP/2 frame heads in a connection's plaintext, both ways, for what watches a
//! connection's frames (`chatter`, `streams`). Payloads are skipped, never copied.

/// The client's preface (RFC 9113 §3.4); a connection that starts otherwise is HTTP/1.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const CONTINUATION: u8 = 9;
/// The ACK flag of SETTINGS and PING.
pub const ACK: u8 = 0x1;
/// The END_STREAM flag of DATA and HEADERS.
pub const END_STREAM: u8 = 0x1;

/// What matters of a frame's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// One connection's plaintext: HTTP/1 (nothing to walk) or HTTP/2 frames.
#[derive(Default)]
pub struct Framing {
    /// How much of the preface has been seen; `PREFACE.len()` once it is HTTP/2.
    preface: usize,
    http1: bool,
    inbound: Walk,
    outbound: Walk,
}

impl Framing {
    /// Bytes the client sent: `each` is called with each frame head they complete.
    pub fn read(&mut self, mut bytes: &[u8], each: impl FnMut(Head)) {
        if self.http1 {
            return;
        }
        if self.preface < PREFACE.len() {
            let n = bytes.len().min(PREFACE.len() - self.preface);
            if bytes[..n] != PREFACE[self.preface..self.preface + n] {
                self.http1 = true;
                return;
            }
            self.preface += n;
            bytes = &bytes[n..];
        }
        self.inbound.walk(bytes, each);
    }

    /// Bytes the server wrote: `each` is called with each frame head they complete.
    pub fn wrote(&mut self, bytes: &[u8], each: impl FnMut(Head)) {
        // hyper writes only once it has read the preface whole: before it, or on HTTP/1,
        // there are no frames to walk.
        if self.http1 || self.preface < PREFACE.len() {
            return;
        }
        self.outbound.walk(bytes, each);
    }
}

/// A position in one direction's frames, which arrive in pieces of any size.
#[derive(Default)]
struct Walk {
    head: [u8; 9],
    /// Bytes of the next head gathered so far.
    have: usize,
    /// Bytes of the current payload still to pass over.
    skip: usize,
}

impl Walk {
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
                    // The top bit is reserved (RFC 9113 §4.1).
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                });
            }
        }
    }
}

/// A frame of `kind` on `stream` with `payload_len` bytes of payload, for tests.
#[cfg(test)]
pub fn frame_on(stream: u32, kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
    let mut f = (payload_len as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.resize(9 + payload_len, 0x5a);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection past its preface.
    fn h2() -> Framing {
        let mut f = Framing::default();
        f.read(PREFACE, |_| panic!("the preface holds no frame"));
        f
    }

    #[test]
    fn heads_are_found_however_the_bytes_are_split() {
        let mut bytes = frame_on(1, HEADERS, 0x4, 30);
        bytes.extend(frame_on(1, DATA, END_STREAM, 70_000));
        bytes.extend(frame_on(0, PING, 0, 8));
        bytes.extend(frame_on(0x8000_0003, 0xfe, 0, 0));
        let want = [
            Head {
                kind: HEADERS,
                flags: 0x4,
                stream: 1,
            },
            Head {
                kind: DATA,
                flags: END_STREAM,
                stream: 1,
            },
            Head {
                kind: PING,
                flags: 0,
                stream: 0,
            },
            Head {
                kind: 0xfe,
                flags: 0,
                stream: 3,
            },
        ];
        for piece in [1, 2, 8, 9, 10, 4096] {
            let mut f = h2();
            let (mut read, mut wrote) = (Vec::new(), Vec::new());
            for chunk in bytes.chunks(piece) {
                f.read(chunk, |h| read.push(h));
                f.wrote(chunk, |h| wrote.push(h));
            }
            assert_eq!(read, want, "pieces of {piece}");
            assert_eq!(wrote, want, "pieces of {piece}");
        }
    }

    #[test]
    fn http1_has_no_frames() {
        let frames = frame_on(0, PING, 0, 8).repeat(3);
        // A request line starting like the preface.
        let mut f = Framing::default();
        f.read(b"PRI /x HTTP/1.1\r\n", |_| panic!("HTTP/1 has no frames"));
        f.read(&frames, |_| panic!("HTTP/1 has no frames"));
        f.wrote(&frames, |_| panic!("HTTP/1 has no frames"));
        // The preface split across reads is still the preface.
        let mut f = Framing::default();
        for b in PREFACE {
            f.read(&[*b], |_| panic!("the preface holds no frame"));
        }
        let mut n = 0;
        f.read(&frames, |_| n += 1);
        assert_eq!(n, 3);
    }
}
