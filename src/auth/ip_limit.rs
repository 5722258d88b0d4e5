//! Per-IP limits on failed sign-ins, kept in memory on each instance (the per-account
//! counters that must hold across instances live in the database). IPv6 addresses are
//! grouped by /64, since one host usually owns a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// Above this many tracked addresses, expired windows are swept before inserting.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
pub struct IpLimiter {
    max_failures: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: OffsetDateTime,
    failures: u32,
}

impl IpLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(until)` while `ip` is blocked.
    pub fn blocked_until(&self, ip: IpAddr, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get(&key(ip))?;
        let ends = w.started + self.window;
        (now < ends && w.failures >= self.max_failures).then_some(ends)
    }

    pub fn record_failure(&self, ip: IpAddr, now: OffsetDateTime) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_THRESHOLD {
            let window = self.window;
            windows.retain(|_, w| now < w.started + window);
        }
        let w = windows.entry(key(ip)).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = IpLimiter::new(3, Duration::minutes(5));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for _ in 0..2 {
            limiter.record_failure(ip, t0);
        }
        assert_eq!(limiter.blocked_until(ip, t0), None);
        limiter.record_failure(ip, t0);
        assert_eq!(
            limiter.blocked_until(ip, t0),
            Some(t0 + Duration::minutes(5))
        );
        assert_eq!(limiter.blocked_until(ip, t0 + Duration::minutes(5)), None);
        let other: IpAddr = [192, 0, 2, 2].into();
        assert_eq!(limiter.blocked_until(other, t0), None);
    }

    #[test]
    fn ipv6_hosts_in_one_slash_64_share_a_limit() {
        let limiter = IpLimiter::new(1, Duration::minutes(5));
        let a: IpAddr = "2001:db8::1".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap_or_else(|e| panic!("{e}"));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        limiter.record_failure(a, t0);
        assert!(limiter.blocked_until(b, t0).is_some());
    }
}
