//! Token buckets by key: a tenant's request rate (off unless it sets `rate_limit`; IdPs
//! honour 429 with Retry-After: Okta retries after it, Entra retries failed objects), failed
//! logins by address, and how often a log line is said.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

const MAX_KEYS: usize = 100_000;

/// How many lines of one kind about clients may be said in an hour, whatever the clients:
/// enough to see a problem, too few for a scanner from many addresses to fill the journal.
pub const LINES_PER_HOUR: u32 = 20;

#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Take one from `key`'s bucket. `Err(wait)` when it is empty.
    pub fn check(&self, key: &str, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        // Bounded: a spray of source addresses cannot grow the map without limit; losing the
        // buckets only forgives some failures.
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.clear();
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // A rate so small that the wait overflows a Duration waits a year.
            const YEAR: Duration = Duration::from_secs(365 * 86_400);
            Err(Duration::try_from_secs_f64((1.0 - b.tokens) / rate).map_or(YEAR, |d| d.min(YEAR)))
        }
    }

    /// Whether each `what` has been said fewer than its `times` in the last hour (a budget
    /// comes back over the hour); counts this time against all of them if so, and against
    /// none if not.
    pub fn within_hour(&self, budgets: &[(&str, u32)], now: Instant) -> bool {
        let buckets: Vec<(&str, f64, f64)> = budgets
            .iter()
            .map(|(what, times)| {
                let times = f64::from(*times);
                (*what, times / 3600.0, times)
            })
            .collect();
        self.check_all(&buckets, now)
    }

    /// Take one from each of these buckets (key, rate, burst) if every one has one, and
    /// from none otherwise: a line said under both a per-source and an overall budget must
    /// not use up the one when the other says no.
    fn check_all(&self, buckets: &[(&str, f64, f64)], now: Instant) -> bool {
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() + buckets.len() > MAX_KEYS {
            map.clear();
        }
        let mut all = true;
        for (key, rate, burst) in buckets {
            let b = map.entry(key.to_string()).or_insert(Bucket {
                tokens: *burst,
                last: now,
            });
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(*burst);
            b.last = now;
            all &= b.tokens >= 1.0;
        }
        if all {
            for (key, ..) in buckets {
                if let Some(b) = map.get_mut(*key) {
                    b.tokens -= 1.0;
                }
            }
        }
        all
    }

    /// Forget every bucket: each key starts full again.
    pub fn clear(&self) {
        match self.buckets.lock() {
            Ok(mut m) => m.clear(),
            Err(p) => p.into_inner().clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check("a", 2.0, 3.0, t0).is_ok());
        }
        let wait = l.check("a", 2.0, 3.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(
            l.check("b", 2.0, 3.0, t0).is_ok(),
            "tenants are independent"
        );
        assert!(
            l.check("a", 2.0, 3.0, t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            l.check("a", 2.0, 3.0, t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn check_all_takes_from_every_bucket_or_from_none() {
        let l = Limiter::default();
        let t0 = Instant::now();
        // The overall budget of 2 runs out on "a" and "b"; "c" is refused then without
        // losing its own token, and is said once the overall budget is back.
        assert!(l.check_all(&[("a", 1.0, 1.0), ("all", 1.0, 2.0)], t0));
        assert!(l.check_all(&[("b", 1.0, 1.0), ("all", 1.0, 2.0)], t0));
        assert!(!l.check_all(&[("c", 1.0, 1.0), ("all", 1.0, 2.0)], t0));
        assert!(!l.check_all(&[("a", 1.0, 1.0), ("all", 1.0, 2.0)], t0));
        let t1 = t0 + Duration::from_millis(1000);
        assert!(l.check_all(&[("c", 1e-9, 1.0), ("all", 1.0, 2.0)], t1));
    }

    #[test]
    fn a_vanishing_rate_waits_a_year_instead_of_panicking() {
        let l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.check("a", 1e-320, 1.0, t0).is_ok());
        let wait = l.check("a", 1e-320, 1.0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(365 * 86_400));
    }
}
