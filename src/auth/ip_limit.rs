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

    /// Counts an attempt from `ip` before it is checked, so concurrent attempts cannot
    /// slip past the limit; `Err(until)` while the address is blocked. A successful
    /// sign-in gives the attempt back with `refund`.
    pub fn reserve(&self, ip: IpAddr, now: OffsetDateTime) -> Result<(), OffsetDateTime> {
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
        if w.failures >= self.max_failures {
            return Err(w.started + self.window);
        }
        w.failures += 1;
        Ok(())
    }

    pub fn refund(&self, ip: IpAddr) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = windows.get_mut(&key(ip)) {
            w.failures = w.failures.saturating_sub(1);
        }
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
        for _ in 0..3 {
            assert_eq!(limiter.reserve(ip, t0), Ok(()));
        }
        assert_eq!(limiter.reserve(ip, t0), Err(t0 + Duration::minutes(5)));
        assert_eq!(limiter.reserve(ip, t0 + Duration::minutes(5)), Ok(()));
        let other: IpAddr = [192, 0, 2, 2].into();
        assert_eq!(limiter.reserve(other, t0), Ok(()));
    }

    #[test]
    fn refunds_give_attempts_back() {
        let limiter = IpLimiter::new(1, Duration::minutes(5));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(limiter.reserve(ip, t0), Ok(()));
        limiter.refund(ip);
        assert_eq!(limiter.reserve(ip, t0), Ok(()));
        assert!(limiter.reserve(ip, t0).is_err());
    }

    #[test]
    fn ipv6_hosts_in_one_slash_64_share_a_limit() {
        let limiter = IpLimiter::new(1, Duration::minutes(5));
        let a: IpAddr = "2001:db8::1".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap_or_else(|e| panic!("{e}"));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(limiter.reserve(a, t0), Ok(()));
        assert!(limiter.reserve(b, t0).is_err());
    }
}
