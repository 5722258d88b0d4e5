//! Per-account sign-in throttling: consecutive failures lead to a lockout that doubles
//! with each further failure, up to a cap. Keyed by the account *name*, whether or not
//! such an account exists, so lockouts reveal nothing about which accounts exist.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    /// Failures older than this start a fresh count.
    pub failure_window: Duration,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
}

impl ThrottlePolicy {
    /// How long to lock after the `failures`-th consecutive failure, if at all:
    /// `base * 2^(failures - max)`, capped.
    pub fn lockout_after(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.max_failures)?;
        let factor = 1i32.checked_shl(over.min(20)).unwrap_or(i32::MAX);
        let lock = self
            .lockout_base
            .checked_mul(factor)
            .unwrap_or(self.lockout_max);
        Some(lock.min(self.lockout_max))
    }

    /// The start of the window in which earlier failures still count.
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.failure_window
    }
}

/// The state of one throttle key after a failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: u32,
    pub locked_until: Option<OffsetDateTime>,
}

/// Whole seconds until `until`, at least 1: the `Retry-After` value.
pub fn retry_after_secs(now: OffsetDateTime, until: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_is_capped() {
        let p = ThrottlePolicy {
            max_failures: 3,
            failure_window: Duration::minutes(15),
            lockout_base: Duration::minutes(1),
            lockout_max: Duration::minutes(15),
        };
        assert_eq!(p.lockout_after(1), None);
        assert_eq!(p.lockout_after(2), None);
        assert_eq!(p.lockout_after(3), Some(Duration::minutes(1)));
        assert_eq!(p.lockout_after(4), Some(Duration::minutes(2)));
        assert_eq!(p.lockout_after(6), Some(Duration::minutes(8)));
        assert_eq!(p.lockout_after(7), Some(Duration::minutes(15)));
        assert_eq!(p.lockout_after(u32::MAX), Some(Duration::minutes(15)));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(retry_after_secs(now, now), 1);
        assert_eq!(retry_after_secs(now, now + Duration::seconds(90)), 90);
    }
}
