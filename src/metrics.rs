//! Prometheus metrics (text exposition format 0.0.4), served only on `server.metrics_bind`
//! — a separate listener meant for the internal network, never the public one: request
//! rates by route and status reveal sign-in failure rates and the like.
//!
//! Labels are bounded: the route is the matched pattern (`/admin/v1/clients/{client_id}`),
//! never the raw path; methods outside the standard set count as `OTHER`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use time::OffsetDateTime;

use crate::keys::AlgStatus;
use crate::password::PasswordHasher;
use crate::storage::PoolStats;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process's counters. Cheap to update: one short lock per request.
pub struct Metrics {
    started: Instant,
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    /// (route, method) → durations.
    durations: Mutex<BTreeMap<(String, &'static str), Histogram>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            requests: Mutex::default(),
            durations: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn observe(&self, route: String, method: &'static str, status: u16, seconds: f64) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            *requests.entry((route.clone(), method, status)).or_default() += 1;
        }
        let mut durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let h = durations.entry((route, method)).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    /// The exposition text: these counters plus the gauges the caller read from the
    /// application at `now` (hashing slots, signing keys, database connections).
    pub fn render(
        &self,
        hasher: &PasswordHasher,
        status: &[AlgStatus],
        pool: PoolStats,
        now: OffsetDateTime,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP portcullis_build_info The running version.\n\
             # TYPE portcullis_build_info gauge\n\
             portcullis_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_uptime_seconds Seconds since this instance started.\n\
             # TYPE portcullis_uptime_seconds gauge\n\
             portcullis_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );

        out.push_str(
            "# HELP portcullis_http_requests_total Requests answered, by route, method and status.\n\
             # TYPE portcullis_http_requests_total counter\n",
        );
        {
            let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((route, method, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "portcullis_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP portcullis_http_request_duration_seconds Time to answer, by route and method.\n\
             # TYPE portcullis_http_request_duration_seconds histogram\n",
        );
        {
            let durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
            for ((route, method), h) in durations.iter() {
                let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    let _ = writeln!(
                        out,
                        "portcullis_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "portcullis_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                     portcullis_http_request_duration_seconds_sum{{{labels}}} {}\n\
                     portcullis_http_request_duration_seconds_count{{{labels}}} {}",
                    h.count, h.sum, h.count
                );
            }
        }

        let _ = writeln!(
            out,
            "# HELP portcullis_password_hashing_slots Password hashes that may run at once.\n\
             # TYPE portcullis_password_hashing_slots gauge\n\
             portcullis_password_hashing_slots {}\n\
             # HELP portcullis_password_hashing_in_flight Password hashes running or queued for a slot now.\n\
             # TYPE portcullis_password_hashing_in_flight gauge\n\
             portcullis_password_hashing_in_flight {}\n\
             # HELP portcullis_password_hashing_rejected_total Sign-ins refused (429) because no slot freed up in time.\n\
             # TYPE portcullis_password_hashing_rejected_total counter\n\
             portcullis_password_hashing_rejected_total {}",
            hasher.capacity(),
            hasher.in_use(),
            hasher.rejected()
        );

        out.push_str(
            "# HELP portcullis_signing_key_current Whether the algorithm has a current signing key (alert on 0).\n\
             # TYPE portcullis_signing_key_current gauge\n",
        );
        for s in status {
            let _ = writeln!(
                out,
                "portcullis_signing_key_current{{alg=\"{}\"}} {}",
                s.alg,
                u8::from(s.has_current)
            );
        }
        out.push_str(
            "# HELP portcullis_signing_key_current_age_seconds How long the current key has signed (alert past the rotation interval).\n\
             # TYPE portcullis_signing_key_current_age_seconds gauge\n",
        );
        for s in status {
            if let Some(since) = s.current_since {
                let _ = writeln!(
                    out,
                    "portcullis_signing_key_current_age_seconds{{alg=\"{}\"}} {}",
                    s.alg,
                    (now - since).whole_seconds().max(0)
                );
            }
        }
        out.push_str(
            "# HELP portcullis_signing_keys_published Keys in the JWKS (next, current and retired).\n\
             # TYPE portcullis_signing_keys_published gauge\n",
        );
        for s in status {
            let _ = writeln!(
                out,
                "portcullis_signing_keys_published{{alg=\"{}\"}} {}",
                s.alg, s.published
            );
        }

        let _ = writeln!(
            out,
            "# HELP portcullis_db_connections Open database connections, by state.\n\
             # TYPE portcullis_db_connections gauge\n\
             portcullis_db_connections{{state=\"idle\"}} {}\n\
             portcullis_db_connections{{state=\"in_use\"}} {}",
            pool.idle,
            pool.open.saturating_sub(pool.idle)
        );
        out
    }
}

/// Label values: backslash, double quote and newline escaped (exposition format).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_into_every_bucket_at_or_above_them() {
        let m = Metrics::default();
        m.observe("/token".into(), "POST", 200, 0.003);
        m.observe("/token".into(), "POST", 400, 20.0);
        let durations = m.durations.lock().unwrap_or_else(|e| e.into_inner());
        let h = &durations[&("/token".to_owned(), "POST")];
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], 0, "le=0.001");
        assert_eq!(h.buckets[2], 1, "le=0.005");
        assert_eq!(
            h.buckets[BUCKETS.len() - 1],
            1,
            "le=10: the 20 s one is only in +Inf"
        );
        let requests = m.requests.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(requests[&("/token".to_owned(), "POST", 400)], 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
