//! Each request's id, sent back in `X-Request-Id` and written in its log lines, so that an
//! answer a client kept (an application's error log, a proxy's) leads to the line that says
//! why. A client that sends its own id (a proxy or an application correlating its calls)
//! gets it back when it is a short token; any other is replaced, so nothing a client sends
//! reaches the log unchecked.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use http::header::HeaderName;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Kept in the request's extensions for the lines logged about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn of(headers: &HeaderMap) -> RequestId {
        match headers.get(&HEADER).and_then(|v| v.to_str().ok()) {
            Some(given) if usable(given) => RequestId(given.to_string()),
            _ => RequestId(fresh()),
        }
    }
}

/// At most 64 letters, digits and `-_.:`: what ids look like (UUIDs, hex, ULIDs), and
/// nothing that could break a log line or a header.
fn usable(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// 16 hex digits: 24 random bits drawn at start, so that two runs' ids differ, then a count
/// (cheaper than drawing random bits for every request).
fn fresh() -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0 >> 40);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff;
    format!("{start:06x}{n:010x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, v.parse().unwrap());
        h
    }

    #[test]
    fn a_short_token_is_kept_and_anything_else_replaced() {
        for kept in ["abc", "0190b7a4-7c4e-7000-8000-00000000002a", "req_1.2:3"] {
            assert_eq!(RequestId::of(&with(kept)).0, kept);
        }
        let long = "a".repeat(65);
        for replaced in ["", "two words", "a\"b", "ä", long.as_str()] {
            let mut h = HeaderMap::new();
            if let Ok(v) = replaced.parse() {
                h.insert(HEADER, v);
            }
            let id = RequestId::of(&h).0;
            assert_ne!(id, replaced);
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn fresh_ids_differ_and_share_the_runs_prefix() {
        let (a, b) = (fresh(), fresh());
        assert_ne!(a, b);
        assert_eq!(a[..6], b[..6]);
    }
}
