//! Prometheus text metrics: counters and histograms kept in memory, rendered on scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A fixed-bucket histogram (upper bounds), safe to update from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations in each bucket alone (at most its bound, above the one before): one
    /// counter to add to per observation; the cumulative counts are summed on render.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in micro-units (µs for seconds, or the raw value ×1e6).
    sum_micro: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
    }

    /// Add `other`'s observations (same bounds) to this one's.
    fn absorb(&self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.count
            .fetch_add(other.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.sum_micro
            .fetch_add(other.sum_micro.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut below = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            below += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {below}");
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let wrap = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{wrap} {}",
            self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{wrap} {n}");
    }
}

const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Storage-side metrics, updated by the writer thread.
#[derive(Debug)]
pub struct StoreMetrics {
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub commit_failures: AtomicU64,
    /// Scans stopped before their end at the request time limit, and because the request
    /// they served had gone.
    pub scans_past_deadline: AtomicU64,
    pub scans_for_no_one: AtomicU64,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            batch_size: Histogram::new(BATCH),
            commit_seconds: Histogram::new(LATENCY),
            commit_failures: AtomicU64::new(0),
            scans_past_deadline: AtomicU64::new(0),
            scans_for_no_one: AtomicU64::new(0),
        }
    }
}

/// (endpoint template, method, status); within it, counts by tenant. Split so that counting a
/// request allocates nothing once its series exists.
type RequestKey = (&'static str, &'static str, u16);

#[derive(Debug, Default)]
struct Requests {
    counts: BTreeMap<RequestKey, BTreeMap<String, u64>>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// How many sets of request counts a server keeps, each thread counting into one of them:
/// one lock taken by every request from both cores moved its cache line between them on each
/// request, which cost more than the counting.
const STRIPES: usize = 8;

/// The set this thread counts into.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|m| *m)
}

/// A set alone on its cache lines (two, for the prefetcher that pulls lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// HTTP-side metrics.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Counts and latencies, one set a thread (`stripe`), summed on render.
    requests: [Padded<Mutex<Requests>>; STRIPES],
    pub auth_failures: AtomicU64,
    pub handshake_failures: HandshakeFailures,
    /// Connections without a valid token closed to give a newcomer their slot.
    pub closed_for_room: AtomicU64,
    /// HTTP/2 connections sent away for floods: control frames past their budget, or
    /// streams reset faster than allowed.
    pub closed_for_chatter: AtomicU64,
    /// When the served certificate ends, in seconds since 1970 (0: none, plain HTTP): an
    /// alert on it fires before IdPs start refusing the connection.
    pub certificate_not_after: std::sync::atomic::AtomicI64,
}

/// The reasons a TLS handshake fails, as `server::handshake` tells them apart.
pub const HANDSHAKE_REASONS: [&str; 7] = [
    "certificate_refused",
    "closed_after_certificate",
    "not_tls",
    "incompatible",
    "timeout",
    "closed",
    "other",
];

/// Failed TLS handshakes by reason.
#[derive(Debug, Default)]
pub struct HandshakeFailures([AtomicU64; 7]);

impl HandshakeFailures {
    pub fn add(&self, reason: &str) {
        if let Some(i) = HANDSHAKE_REASONS.iter().position(|r| *r == reason) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP scimd_tls_handshake_failures_total TLS handshakes that did not finish, by reason: the client refused the certificate, spoke something other than TLS, offered nothing scimd accepts, went quiet, closed or reset the connection, or other.\n# TYPE scimd_tls_handshake_failures_total counter\n");
        for (reason, n) in HANDSHAKE_REASONS.iter().zip(&self.0) {
            let _ = writeln!(
                out,
                "scimd_tls_handshake_failures_total{{reason=\"{reason}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn locked(m: &Mutex<Requests>) -> std::sync::MutexGuard<'_, Requests> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpMetrics {
    /// Every stripe's counts and latencies added up.
    fn summed(&self) -> Requests {
        let mut all = Requests::default();
        for stripe in &self.requests {
            let r = locked(&stripe.0);
            for (key, by_tenant) in &r.counts {
                let sum = all.counts.entry(*key).or_default();
                for (t, n) in by_tenant {
                    *sum.entry(t.clone()).or_default() += n;
                }
            }
            for (e, h) in &r.latency {
                all.latency
                    .entry(e)
                    .or_insert_with(|| Histogram::new(LATENCY))
                    .absorb(h);
            }
        }
        all
    }

    pub fn record(
        &self,
        endpoint: &'static str,
        method: &str,
        status: u16,
        tenant: &str,
        seconds: f64,
    ) {
        let mut r = locked(&self.requests[stripe()].0);
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            _ => "OTHER",
        };
        let by_tenant = r.counts.entry((endpoint, method, status)).or_default();
        match by_tenant.get_mut(tenant) {
            Some(n) => *n += 1,
            None => {
                by_tenant.insert(tenant.to_string(), 1);
            }
        }
        r.latency
            .entry(endpoint)
            .or_insert_with(|| Histogram::new(LATENCY))
            .observe(seconds);
    }

    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP scimd_requests_total Requests by endpoint template, method, status and tenant.\n");
        out.push_str("# TYPE scimd_requests_total counter\n");
        let r = self.summed();
        for ((e, m, s), by_tenant) in r.counts.iter() {
            for (t, n) in by_tenant {
                let _ = writeln!(
                    out,
                    "scimd_requests_total{{endpoint=\"{}\",method=\"{}\",status=\"{s}\",tenant=\"{}\"}} {n}",
                    escape(e),
                    escape(m),
                    escape(t)
                );
            }
        }
        out.push_str(
            "# HELP scimd_request_duration_seconds Request latency by endpoint template.\n",
        );
        out.push_str("# TYPE scimd_request_duration_seconds histogram\n");
        for (e, h) in r.latency.iter() {
            h.render(
                out,
                "scimd_request_duration_seconds",
                &format!("endpoint=\"{}\"", escape(e)),
            );
        }
        out.push_str(
            "# HELP scimd_auth_failures_total Requests refused for a missing or wrong token, those answered 429 by the per-address throttle included.\n",
        );
        out.push_str("# TYPE scimd_auth_failures_total counter\n");
        let _ = writeln!(
            out,
            "scimd_auth_failures_total {}",
            self.auth_failures.load(Ordering::Relaxed)
        );
        self.handshake_failures.render(out);
        out.push_str("# HELP scimd_connections_closed_for_room_total Connections that had shown no valid token, closed to give a newcomer their slot when every one of server.max_connections was taken.\n# TYPE scimd_connections_closed_for_room_total counter\n");
        let _ = writeln!(
            out,
            "scimd_connections_closed_for_room_total {}",
            self.closed_for_room.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scimd_connections_closed_for_chatter_total HTTP/2 connections sent away for floods: PING, SETTINGS, WINDOW_UPDATE and other frames past what their requests account for, or streams reset faster than allowed (rapid reset).\n# TYPE scimd_connections_closed_for_chatter_total counter\n");
        let _ = writeln!(
            out,
            "scimd_connections_closed_for_chatter_total {}",
            self.closed_for_chatter.load(Ordering::Relaxed)
        );
        let ends = self.certificate_not_after.load(Ordering::Relaxed);
        if ends != 0 {
            out.push_str("# HELP scimd_tls_certificate_expiry_timestamp_seconds When the served certificate ends (notAfter), in seconds since 1970.\n# TYPE scimd_tls_certificate_expiry_timestamp_seconds gauge\n");
            let _ = writeln!(out, "scimd_tls_certificate_expiry_timestamp_seconds {ends}");
        }
    }
}

impl StoreMetrics {
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP scimd_write_batch_size Write requests handled in one transaction (those refused inside it, such as a 409, included).\n");
        out.push_str("# TYPE scimd_write_batch_size histogram\n");
        self.batch_size.render(out, "scimd_write_batch_size", "");
        out.push_str("# HELP scimd_commit_duration_seconds Time of one durable commit.\n");
        out.push_str("# TYPE scimd_commit_duration_seconds histogram\n");
        self.commit_seconds
            .render(out, "scimd_commit_duration_seconds", "");
        out.push_str("# HELP scimd_commit_failures_total Write transactions not committed (storage failed, or a write panicked): their requests were answered 503 and nothing of them was kept.\n# TYPE scimd_commit_failures_total counter\n");
        let _ = writeln!(
            out,
            "scimd_commit_failures_total {}",
            self.commit_failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scimd_scans_stopped_total Reads that visit records one by one (a filter or sort no index serves), stopped before their end: at server.request_timeout_secs (answered 400 tooMany), or because no one waited for the answer any more (the client hung up, or the server closed the connection at shutdown or to make room).\n# TYPE scimd_scans_stopped_total counter\n");
        let _ = writeln!(
            out,
            "scimd_scans_stopped_total{{reason=\"deadline\"}} {}",
            self.scans_past_deadline.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "scimd_scans_stopped_total{{reason=\"client_gone\"}} {}",
            self.scans_for_no_one.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 10.0]);
        h.observe(0.5);
        h.observe(5.0);
        h.observe(50.0);
        let mut s = String::new();
        h.render(&mut s, "x", "a=\"b\"");
        assert!(s.contains("x_bucket{a=\"b\",le=\"1\"} 1"), "{s}");
        assert!(s.contains("x_bucket{a=\"b\",le=\"10\"} 2"));
        assert!(s.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"));
        assert!(s.contains("x_count{a=\"b\"} 3"));
        assert!(s.contains("x_sum{a=\"b\"} 55.5"));
    }

    /// Each thread counts into its own stripe; a scrape sees the sum of all of them.
    #[test]
    fn requests_counted_on_many_threads_are_summed_on_render() {
        let m = std::sync::Arc::new(HttpMetrics::default());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.record("/Users/{id}", "GET", 200, "acme", 0.002);
                    }
                    m.record(
                        "/Users",
                        "POST",
                        201,
                        if i % 2 == 0 { "acme" } else { "b" },
                        7.0,
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "scimd_requests_total{endpoint=\"/Users/{id}\",method=\"GET\",status=\"200\",tenant=\"acme\"} 1200\n",
            "scimd_requests_total{endpoint=\"/Users\",method=\"POST\",status=\"201\",tenant=\"acme\"} 6\n",
            "scimd_requests_total{endpoint=\"/Users\",method=\"POST\",status=\"201\",tenant=\"b\"} 6\n",
            "scimd_request_duration_seconds_bucket{endpoint=\"/Users/{id}\",le=\"0.001\"} 0\n",
            "scimd_request_duration_seconds_bucket{endpoint=\"/Users/{id}\",le=\"0.0025\"} 1200\n",
            "scimd_request_duration_seconds_bucket{endpoint=\"/Users/{id}\",le=\"5\"} 1200\n",
            "scimd_request_duration_seconds_count{endpoint=\"/Users/{id}\"} 1200\n",
            // Above every bound: in +Inf only.
            "scimd_request_duration_seconds_bucket{endpoint=\"/Users\",le=\"5\"} 0\n",
            "scimd_request_duration_seconds_bucket{endpoint=\"/Users\",le=\"+Inf\"} 12\n",
            "scimd_request_duration_seconds_sum{endpoint=\"/Users\"} 84\n",
        ] {
            assert!(out.contains(line), "{line} not in:\n{out}");
        }
    }

    #[test]
    fn handshake_failures_render_every_reason_with_its_count() {
        let c = HandshakeFailures::default();
        c.add("not_tls");
        c.add("not_tls");
        c.add("timeout");
        let mut out = String::new();
        c.render(&mut out);
        assert!(out.contains("scimd_tls_handshake_failures_total{reason=\"not_tls\"} 2\n"));
        assert!(out.contains("scimd_tls_handshake_failures_total{reason=\"timeout\"} 1\n"));
        assert!(
            out.contains("scimd_tls_handshake_failures_total{reason=\"certificate_refused\"} 0\n")
        );
    }
}
