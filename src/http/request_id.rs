//! Each request's id, sent back in `X-Request-Id` and written in its log lines, so that an
//! answer a client kept (an application's error log, a proxy's) leads to the line that says
//! why. A client that sends its own id (a proxy or an application correlating its calls)
//! gets it back when it is a short token; any other is replaced, so nothing a client sends
//! reaches the log unchecked.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
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

/// 16 hex digits: a count hashed with keys drawn at start (SipHash), cheaper than random
/// bits for every request. A bare count would tell anyone polling `/healthz` how many
/// requests every tenant makes; these differ between runs and say nothing of the count.
/// Each thread counts on its own (its number in the top 16 bits), so that no counter is
/// shared by every request on every core.
fn fresh() -> String {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: Cell<u64> = Cell::new(THREADS.fetch_add(1, Ordering::Relaxed) << 48);
    }
    let n = NEXT.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let h = KEYS.get_or_init(RandomState::new).hash_one(n);
    crate::auth::hex(&h.to_be_bytes())
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

    /// Consecutive ids share no run of leading digits a count would give them, and repeat
    /// none.
    #[test]
    fn fresh_ids_are_unique_and_say_nothing_of_the_count() {
        let ids: Vec<String> = (0..10_000).map(|_| fresh()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Nor do other threads' ids repeat these or each other's.
        let others: Vec<String> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_500).map(|_| fresh()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().unwrap())
            .collect();
        let everyone: std::collections::HashSet<&String> = ids.iter().chain(&others).collect();
        assert_eq!(everyone.len(), ids.len() + others.len());
        let shared_prefix = ids.windows(2).filter(|w| w[0][..6] == w[1][..6]).count();
        assert!(
            shared_prefix < 10,
            "{shared_prefix} neighbours share 6 digits"
        );
    }
}
